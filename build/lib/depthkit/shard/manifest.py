"""A shard folder's manifest.json: written by `depthkit shard` (`write_manifest`), read by
every consumer (`load_manifest` and the accessors below).

Structure (all paths relative to the shard root)::

    {
      "format": "depthkit-shards", "version": 1,
      "depthkit_version": "0.1.0", "created": "2026-11-30T14:00:00Z",
      "source": ["/data/school"],                  # what was sharded (resolved paths)
      "resolutions": [64, 224],
      "split": {"method": "random", "val_fraction": 0.1, "seed": 0},
                                                   # by-bg adds "val_backgrounds": [ids]
      "subset": {"bgs": null, "limit": null},      # --bgs (list of ids) and --limit asked for
      "shard_size": 2000,                          # at most this many samples per shard
      "counts": {"train": 144, "val": 16, "rejected": 0},
      "backgrounds": [1, 2, 102],                  # usable background ids, ascending
      "stats": {                                   # per channel, on the [0, 1] scale
        "bg": {"mean": [r, g, b], "std": [r, g, b]},
        "fgbg": {"mean": [...], "std": [...]},
        "mask": {"mean": [m], "std": [s]},
        "depth": {"mean": [m], "std": [s]}
      },
      "stats_info": {"res": 224, "samples": 144, "backgrounds": 3, "note": "..."},
                                                   # what the stats were computed from
      "files": {
        "224": {
          "backgrounds": {"tar": "224/backgrounds.tar", "index": "224/backgrounds.idx",
                          "samples": 4, "bytes": 123, "sha256": "..."},
          "train": [{"tar": "224/train-000000.tar", "index": "224/train-000000.idx",
                     "samples": 144, "bytes": 456, "sha256": "..."}],
          "val": [...]
        }
      },
      "rejects": {"count": 0, "by_reason": {}, "file": "rejects.jsonl"}
                                                   # by_reason: reject kind -> count
    }

Shards holding no sample (every one rejected) are left out of "files".
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from depthkit.core.atomic import write_atomic
from depthkit.core.errors import DepthkitError
from depthkit.core.version import __version__
from depthkit.shard import schema
from depthkit.shard.context import RunContext
from depthkit.shard.files import Backgrounds
from depthkit.shard.schema import FORMAT_NAME, FORMAT_VERSION, MANIFEST_NAME
from depthkit.shard.stats import channel_stats

Manifest = dict[str, Any]


def load_manifest(root: Path) -> Manifest:
    """Read and sanity-check `root/manifest.json`; one-line DepthkitError if unusable."""
    root = Path(root)
    if not root.is_dir():
        raise DepthkitError(f"shard folder not found: {root}")
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise DepthkitError(f"no {MANIFEST_NAME} in {root} (run `depthkit shard` first)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DepthkitError(f"unreadable manifest {path}: {err}") from None
    if manifest.get("format") != FORMAT_NAME or manifest.get("version") != FORMAT_VERSION:
        raise DepthkitError(
            f"{path} is not a {FORMAT_NAME} v{FORMAT_VERSION} manifest "
            f"(format={manifest.get('format')!r}, version={manifest.get('version')!r})"
        )
    return manifest


def resolutions(manifest: Manifest) -> list[int]:
    """Resolutions the shard folder holds, ascending."""
    return sorted(int(r) for r in manifest["files"])


def split_files(manifest: Manifest, res: int, split: str) -> list[dict[str, Any]]:
    """The shard entries (tar, index, samples, ...) of one split at one resolution."""
    files = manifest["files"].get(str(int(res)))
    if files is None:
        have = ", ".join(str(r) for r in resolutions(manifest)) or "none"
        raise DepthkitError(
            f"shards hold no {res} px copy (have: {have}); "
            f"rerun `depthkit shard ... --res {res}`"
        )
    if split not in files:
        raise DepthkitError(f"shards hold no '{split}' split at {res} px")
    return list(files[split])


def background_file(manifest: Manifest, res: int) -> dict[str, Any]:
    """The backgrounds.tar entry at one resolution."""
    split_files(manifest, res, "train")  # raises the same clear error if res is missing
    return dict(manifest["files"][str(int(res))]["backgrounds"])


def split_count(manifest: Manifest, split: str) -> int:
    """Number of samples in a split (the same at every resolution)."""
    return int(manifest["counts"][split])


# ----------------------------------------------------------------------------- writing

STATS_NOTE = ("all backgrounds; the first samples of the shuffled train shards; values on "
              "the [0, 1] scale, mask before threshold")


def write_manifest(run: RunContext, bgs: Backgrounds, problems: list[dict[str, str]]
                   ) -> Manifest:
    """Write rejects.jsonl, then manifest.json (each atomically), from the journal of
    finished shards and the rejects outside them (`problems`); return the manifest."""
    manifest, rejects = build_manifest(run, bgs, problems)
    write_atomic(run.out / schema.REJECTS_NAME, rejects.encode())
    write_atomic(run.out / MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def build_manifest(run: RunContext, bgs: Backgrounds, problems: list[dict[str, str]]
                   ) -> tuple[Manifest, str]:
    """(manifest, rejects.jsonl text) of a finished run (structure in the module docstring)."""
    cfg, plan = run.cfg, run.plan
    files, counts, shard_rejects = _listed_files(run, bgs.entries)
    uniq = sorted({(p["path"], p["reason"], p["kind"]) for p in [*problems, *shard_rejects]})
    lines = "".join(json.dumps({"path": p, "reason": r, "kind": k}) + "\n" for p, r, k in uniq)
    top = max(run.resolutions)
    stats, n_stats = channel_stats(run.out / files[str(top)]["backgrounds"]["tar"],
                                   [run.out / e["tar"] for e in files[str(top)]["train"]],
                                   cfg.stats_samples, run.pool)
    split: dict[str, Any] = {"method": cfg.split.method, "val_fraction": cfg.split.val_fraction,
                             "seed": cfg.split.seed}
    if plan.val_bgs is not None:
        split["val_backgrounds"] = list(plan.val_bgs)
    manifest = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION,
        "depthkit_version": __version__,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": [str(s.resolve()) for s in run.sources],
        "resolutions": list(run.resolutions),
        "split": split,
        "subset": {"bgs": list(cfg.bgs) if cfg.bgs is not None else None, "limit": cfg.limit},
        "shard_size": cfg.shard_size,
        "counts": {**counts, "rejected": len(uniq)},
        "backgrounds": sorted(bgs.ids),
        "stats": stats,
        "stats_info": {"res": top, "samples": n_stats, "backgrounds": len(bgs.ids),
                       "note": STATS_NOTE},
        "files": files,
        "rejects": {"count": len(uniq),
                    "by_reason": dict(sorted(Counter(k for _, _, k in uniq).items())),
                    "file": schema.REJECTS_NAME},
    }
    return manifest, lines


def _listed_files(run: RunContext, bg_entries: dict[str, Any]
                  ) -> tuple[dict[str, Any], dict[str, int], list[dict[str, str]]]:
    """(files section, samples per split, rejects inside shards) from the journal."""
    files = {str(r): {"backgrounds": bg_entries[str(r)], "train": [], "val": []}
             for r in run.resolutions}
    counts = {s: 0 for s in schema.SPLITS}
    rejects: list[dict[str, str]] = []
    for i, spec in enumerate(run.plan.shards):
        rec = run.journal["done"][str(i)]
        rejects += rec["rejects"]
        counts[spec.split] += rec["files"][str(run.resolutions[0])]["samples"]
        for r in run.resolutions:
            entry = rec["files"][str(r)]
            if entry["samples"]:
                files[str(r)][spec.split].append(entry)
    return files, counts, rejects


def listed_paths(manifest: Manifest) -> set[str]:
    """Every shard tar and index path the manifest lists (backgrounds excepted)."""
    return {e[k] for r in manifest["files"].values() for sp in schema.SPLITS
            for e in r[sp] for k in ("tar", "index")}


def total_bytes(manifest: Manifest) -> int:
    """Size of every tar the manifest lists, backgrounds included."""
    return sum(e["bytes"] for r in manifest["files"].values()
               for e in [r["backgrounds"], *r["train"], *r["val"]])
