"""`depthkit verify`: check a shard folder against its manifest, sample by sample.

Per tar: size and sha256 as recorded, sample count, index file equal to the one its members
give, every sample complete (all components), every image decodable at res x res with the
right channels, every bg id found in that resolution's backgrounds.tar, no key twice, and the
same keys in each shard at every resolution. Tars are checked in a process pool.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from depthkit.core.pool import worker_pool
from depthkit.core.progress import progress_bar
from depthkit.shard import schema
from depthkit.shard.convert import DEFAULT_MAX_PIXELS, Rejected, decode_checked
from depthkit.shard.manifest import load_manifest, resolutions
from depthkit.shard.tario import Member, index_text, sha256_file, split_name

Task = tuple[int, str, dict[str, Any]]  # (res, "backgrounds" or split, manifest entry)


@dataclass
class TarCheck:
    """What checking one tar found."""

    rel: str
    problems: list[str] = field(default_factory=list)
    samples: int = 0
    keys_sha: str = ""
    keys: list[str] = field(default_factory=list)
    bg_ids: list[int] = field(default_factory=list)


@dataclass
class VerifyReport:
    """The outcome of `verify_shards`: empty `problems` means the folder is sound."""

    root: Path
    problems: list[str]
    tars: int
    samples: dict[str, int]
    bytes: int

    @property
    def ok(self) -> bool:
        return not self.problems


def _read_tar(path: Path) -> Iterator[tuple[Member, bytes]]:
    with tarfile.open(path, "r:") as tar:
        for info in tar:
            if not info.isreg():
                raise tarfile.TarError(f"member {info.name!r} is not a regular file")
            f = tar.extractfile(info)
            assert f is not None
            yield Member(info.name, info.offset_data, info.size), f.read()


def _check_image(data: bytes, what: str, mode: str, res: int) -> str | None:
    try:
        d = decode_checked(data, what, mode, (res,), DEFAULT_MAX_PIXELS)
    except Rejected as err:
        return str(err)
    if d.size != (res, res) or d.format != "JPEG":
        return f"{what}: {d.format} {d.size[0]}x{d.size[1]}, expected JPEG {res}x{res}"
    return None


def check_tar(root: Path, entry: dict[str, Any], res: int, kind: str,
              bg_ids: frozenset[int]) -> TarCheck:
    """Check one tar (kind "backgrounds" or a split) against its manifest entry."""
    rel = entry.get("tar", "?")
    out = TarCheck(rel)
    bad = out.problems.append
    tar = root / rel
    if not tar.is_file():
        bad(f"{rel}: missing")
        return out
    if tar.stat().st_size != entry.get("bytes"):
        bad(f"{rel}: {tar.stat().st_size} bytes, manifest says {entry.get('bytes')}")
    if sha256_file(tar) != entry.get("sha256"):
        bad(f"{rel}: sha256 differs from the manifest")
    members: list[Member] = []
    samples: dict[str, dict[str, bytes]] = {}
    order: list[str] = []
    seen: set[str] = set()
    try:
        for m, data in _read_tar(tar):
            members.append(m)
            key, ext = split_name(m.name)
            if key not in samples:
                if key in seen:
                    bad(f"{rel}: key {key} appears in two places")
                samples[key] = {}
                order.append(key)
                seen.add(key)
                if len(samples) > 1:  # check and drop the previous sample
                    prev = order[-2]
                    _check_sample(rel, prev, samples.pop(prev), res, kind, bg_ids, out)
            samples[key][ext] = data
        for key in list(samples):
            _check_sample(rel, key, samples.pop(key), res, kind, bg_ids, out)
    except (tarfile.TarError, OSError, EOFError) as err:
        bad(f"{rel}: unreadable tar ({err})")
        return out
    out.samples = len(order)
    out.keys = order
    out.keys_sha = hashlib.sha256("\n".join(order).encode()).hexdigest()
    if out.samples != entry.get("samples"):
        bad(f"{rel}: {out.samples} samples, manifest says {entry.get('samples')}")
    idx_rel = entry.get("index", "?")
    idx = root / idx_rel
    try:
        if idx.read_text() != index_text(members):
            bad(f"{idx_rel}: does not match the members of {rel}")
    except (OSError, UnicodeDecodeError):
        bad(f"{idx_rel}: missing or unreadable")
    return out


def _check_sample(rel: str, key: str, parts: dict[str, bytes], res: int, kind: str,
                  bg_ids: frozenset[int], out: TarCheck) -> None:
    bad = out.problems.append
    where = f"{rel}: {key}"
    if kind == "backgrounds":
        bg = schema.BACKGROUND
        if set(parts) != {bg.ext} or not key.startswith("bg") or not key[2:].isdigit():
            bad(f"{where}: not a background member ({', '.join(sorted(parts))})")
            return
        out.bg_ids.append(int(key[2:]))
        if (msg := _check_image(parts[bg.ext], "background", str(bg.mode), res)) is not None:
            bad(f"{where}: {msg}")
        return
    missing = [e for e in schema.SAMPLE_EXTS if e not in parts]
    extra = [e for e in parts if e not in schema.SAMPLE_EXTS]
    if missing or extra:
        bad(f"{where}: missing {missing or '-'}, unexpected {extra or '-'}")
    for f in schema.IMAGE_FIELDS:
        if f.ext in parts and (msg := _check_image(parts[f.ext], f.name, str(f.mode), res)):
            bad(f"{where}: {msg}")
    if schema.EXT_BGID in parts:
        try:
            bg = schema.decode_bgid(parts[schema.EXT_BGID])
            if bg not in bg_ids:
                bad(f"{where}: bg id {bg} not in backgrounds.tar")
        except ValueError as err:
            bad(f"{where}: {err}")
    if schema.EXT_META in parts:
        try:
            json.loads(parts[schema.EXT_META])
        except ValueError:
            bad(f"{where}: meta.json is not JSON")


def verify_shards(root: Path, workers: int = 0, progress: bool = True) -> VerifyReport:
    """Check every file the manifest lists (DepthkitError if the manifest is unusable)."""
    root = Path(root)
    manifest = load_manifest(root)
    tasks = _tasks(manifest)
    # backgrounds first: their ids are what sample bg ids must resolve to
    bg_sets, problems = _check_backgrounds(root, manifest, tasks)
    checks = _check_splits(root, [t for t in tasks if t[1] != "backgrounds"], bg_sets,
                           workers, progress)
    for _, _, chk in checks:
        problems += chk.problems
    samples = _check_counts_and_keys(manifest, checks, problems)
    by_name: dict[str, set[str]] = {}
    for _, _, chk in checks:
        by_name.setdefault(Path(chk.rel).name, set()).add(chk.keys_sha)
    for name, shas in sorted(by_name.items()):
        if len(shas) > 1:
            problems.append(f"{name}: holds different samples at different resolutions")
    total = sum((root / e.get("tar", "")).stat().st_size for _, _, e in tasks
                if (root / e.get("tar", "?")).is_file())
    return VerifyReport(root, problems, len(tasks), samples, total)


def _tasks(manifest: dict[str, Any]) -> list[Task]:
    """Every tar the manifest lists, per resolution: backgrounds, then each split's shards."""
    tasks: list[Task] = []
    for res in resolutions(manifest):
        files = manifest["files"][str(res)]
        tasks.append((res, "backgrounds", files.get("backgrounds", {})))
        for split in schema.SPLITS:
            tasks += [(res, split, e) for e in files.get(split, [])]
    return tasks


def _check_backgrounds(root: Path, manifest: dict[str, Any], tasks: list[Task]
                       ) -> tuple[dict[int, frozenset[int]], list[str]]:
    """(background ids found per resolution, problems) of the backgrounds tars."""
    problems: list[str] = []
    bg_sets: dict[int, frozenset[int]] = {}
    for res, kind, entry in [t for t in tasks if t[1] == "backgrounds"]:
        chk = check_tar(root, entry, res, kind, frozenset())
        problems += chk.problems
        bg_sets[res] = frozenset(chk.bg_ids)
        if sorted(chk.bg_ids) != sorted(manifest.get("backgrounds", [])):
            problems.append(f"{chk.rel}: background ids differ from the manifest's list")
    return bg_sets, problems


def _check_splits(root: Path, split_tasks: list[Task], bg_sets: dict[int, frozenset[int]],
                  workers: int, progress: bool) -> list[tuple[int, str, TarCheck]]:
    """Check the split tars, in a process pool when `workers` > 0; results in task order."""
    checks: list[tuple[int, str, TarCheck]] = []
    with worker_pool(workers) as pool, progress_bar("verify", total=len(split_tasks),
                                                     unit="tars", enabled=progress) as adv:
        args = [(root, e, r, k, bg_sets.get(r, frozenset())) for r, k, e in split_tasks]
        results = (pool.map(_check_tar_args, args) if pool is not None
                   else map(_check_tar_args, args))
        for (res, kind, _), chk in zip(split_tasks, results, strict=True):
            checks.append((res, kind, chk))
            adv(1)
    return checks


def _check_counts_and_keys(manifest: dict[str, Any], checks: list[tuple[int, str, TarCheck]],
                           problems: list[str]) -> dict[str, int]:
    """Per resolution: no key in two shards, and split sizes as the manifest counts them
    (appended to `problems`). Returns the samples per split (of the last resolution)."""
    samples = {s: 0 for s in schema.SPLITS}
    for res in resolutions(manifest):
        seen: set[str] = set()
        per_split = {s: 0 for s in schema.SPLITS}
        for r, kind, chk in checks:
            if r != res:
                continue
            per_split[kind] += chk.samples
            dup = seen.intersection(chk.keys)
            if dup:
                problems.append(f"{chk.rel}: {len(dup)} key(s) also in another shard, "
                                f"e.g. {min(dup)}")
            seen.update(chk.keys)
        for split in schema.SPLITS:
            want = manifest.get("counts", {}).get(split)
            if per_split[split] != want:
                problems.append(f"{res}/: {per_split[split]} {split} samples, manifest "
                                f"counts say {want}")
        samples = per_split
    return samples


def _check_tar_args(args: tuple[Path, dict[str, Any], int, str, frozenset[int]]) -> TarCheck:
    return check_tar(*args)


def format_report(r: VerifyReport) -> str:
    """One line: OK with what was checked, or FAILED with the number of problems."""
    if r.ok:
        return (f"OK {r.root}: {r.tars} tars, {r.samples['train']:,} train + "
                f"{r.samples['val']:,} val samples per resolution, {r.bytes / 1e6:,.1f} MB")
    return f"FAILED {r.root}: {len(r.problems)} problem(s)"
