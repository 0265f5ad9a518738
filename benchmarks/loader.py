"""Benchmark the depthkit loader beside albumentations, the Pillow baseline and the decode floor.

Usage: python benchmarks/loader.py [--fgs 10 --positions 10] [--batch 64] [--json FILE]

Makes its own synthetic dataset (depthkit.synth.dataset, 224 px JPEG, original layout) and
shards it at 64, 128 and 224 px (depthkit.shard.write_shards), once, in a temp folder (or in
--data, kept and reused). Per resolution, with the SAME AugmentConfig (the original list):
  depthkit cpu    - build_loader(device="cpu", num_threads=--threads), full augmentation
  albumentations  - torch DataLoader, --threads workers, cv2 decode, one A.Compose per sample
                    with one geometry for all four images (benchmarks/albu_loader.py; needs
                    `pip install -e .[bench]`, else the column is skipped with a note)
  Pillow baseline - torch DataLoader, --threads workers, Pillow decode + per-image augmentation
                    as the original project did it (benchmarks/baseline_loader.py)
  decode floor    - DALI CPU read + decode of the same shard bytes (fgbg, mask, depth)
  depthkit gpu, gpu decode floor - the same on CUDA (only when CUDA is present)
--devices picks the columns (cpu: the first five; cuda: the GPU ones; default both where CUDA
is present).
Each figure iterates ONE loader over epochs (at least --epochs, and at least --seconds of
measured time); the first batch is excluded and printed as start-up; on CUDA the clock is read
only after torch.cuda.synchronize(). Then, at --breakdown-res, where the time of depthkit goes:
decode only, + backgrounds and scaling, + geometry, + colour, + grid distortion (= full).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nvidia.dali as dali  # noqa: E402
import psutil  # noqa: E402
import torch  # noqa: E402
from nvidia.dali import fn, pipeline_def, types  # noqa: E402

from benchmarks.baseline_loader import baseline_loader  # noqa: E402
from depthkit.loader import AugmentConfig, LoaderConfig, build_loader  # noqa: E402
from depthkit.shard import ShardConfig, schema, write_shards  # noqa: E402
from depthkit.shard.manifest import load_manifest, split_files  # noqa: E402
from depthkit.synth.dataset import SynthConfig, synthesize  # noqa: E402

RESOLUTIONS = (64, 128, 224)
INSTALL_HINT = "pip install -e .[bench]  (albumentations==2.0.8, opencv-python-headless)"
Epochs = Callable[[int], Iterable[Any]]  # epoch number -> that epoch's batches


@dataclass(frozen=True)
class Bench:
    """The data and settings every measurement shares."""

    src: Path  # original folder layout (the DataLoader baselines read it)
    shards: Path
    norm: dict
    augment: AugmentConfig
    batch: int
    threads: int
    epochs: int
    seconds: float


def sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()  # the clock must see the queued GPU work finished


def cpu_seconds() -> float:
    """User + system CPU time of this process and its live children (DataLoader workers)."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += sum(child.cpu_times()[:2])
    return total


def measure(epochs: Epochs, bench: Bench, cuda: bool = False) -> dict[str, float]:
    """samples/s over whole epochs of one loader, first batch excluded (its time = start-up),
    and samples per CPU-second over the same span (less sensitive to other load)."""
    t0 = time.perf_counter()
    t1 = c1 = None
    n = done = 0
    while done < bench.epochs or time.perf_counter() - t1 < bench.seconds:
        for b in epochs(done):
            if t1 is None:
                sync(cuda)
                t1, c1 = time.perf_counter(), cpu_seconds()
                continue
            n += int(b["bg"].shape[0]) if isinstance(b, dict) else int(b)
        done += 1
        if t1 is None:
            raise RuntimeError("an epoch of the loader yielded no batch (too few samples?)")
    sync(cuda)
    wall, cpu = time.perf_counter() - t1, cpu_seconds() - c1
    return {"samples_per_s": n / wall, "samples_per_cpu_s": n / cpu if cpu > 0 else None,
            "startup_s": t1 - t0, "epochs": done, "samples": n}


def each_epoch(loader: Any) -> Epochs:
    """Iterate the same loader once per epoch (set_epoch where it has one)."""

    def epoch(e: int) -> Any:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(e)
        return loader

    return epoch


def floor_epochs(bench: Bench, res: int, gpu: bool) -> Epochs:
    """Read + decode the three JPEGs of every train sample with DALI, nothing else."""
    entries = split_files(load_manifest(bench.shards), res, "train")
    where = "mixed" if gpu else "cpu"

    @pipeline_def(batch_size=bench.batch, num_threads=bench.threads,
                  device_id=torch.cuda.current_device() if gpu else None, seed=0)
    def decode_only():
        f, m, d = fn.readers.webdataset(
            paths=[str(bench.shards / e["tar"]) for e in entries],
            index_paths=[str(bench.shards / e["index"]) for e in entries],
            ext=[schema.EXT_FGBG, schema.EXT_MASK, schema.EXT_DEPTH], pad_last_batch=True)
        return (fn.decoders.image(f, device=where),
                fn.decoders.image(m, device=where, output_type=types.GRAY),
                fn.decoders.image(d, device=where, output_type=types.GRAY))

    pipe = decode_only()
    pipe.build()
    steps = sum(int(e["samples"]) for e in entries) // bench.batch

    def epoch(_: int) -> Iterable[int]:
        for _ in range(steps):
            pipe.run()
            yield bench.batch

    return epoch


def depthkit_epochs(bench: Bench, res: int, device: str, **kw: Any) -> Epochs:
    cfg = LoaderConfig(bench.shards, res=res, batch_size=bench.batch, device=device,
                       num_threads=bench.threads, **{"augment": bench.augment, **kw})
    return each_epoch(build_loader(cfg))


def albu_epochs(bench: Bench, res: int) -> Epochs | None:
    """The albumentations DataLoader, or None when the bench extra is not installed."""
    try:
        from benchmarks.albu_loader import albu_loader
    except ImportError:
        return None
    return each_epoch(albu_loader(bench.src, res, bench.batch, bench.augment, bench.norm,
                                  workers=bench.threads))


def measure_res(bench: Bench, res: int, devices: tuple[str, ...]) -> dict[str, Any]:
    """Every column of one resolution's row on the given devices (GPU columns first)."""
    row: dict[str, Any] = {"res": res}
    if "cuda" in devices:
        row["depthkit_gpu"] = measure(depthkit_epochs(bench, res, "cuda"), bench, cuda=True)
        row["floor_gpu"] = measure(floor_epochs(bench, res, gpu=True), bench, cuda=True)
    if "cpu" in devices:
        row["depthkit_cpu"] = measure(depthkit_epochs(bench, res, "cpu"), bench)
        albu = albu_epochs(bench, res)
        row["albumentations"] = measure(albu, bench) if albu is not None else None
        row["pillow"] = measure(each_epoch(baseline_loader(
            bench.src, res, bench.batch, bench.augment, bench.norm, workers=bench.threads)),
            bench)
        row["floor_cpu"] = measure(floor_epochs(bench, res, gpu=False), bench)
    return row


def breakdown(bench: Bench, res: int, device: str) -> list[dict[str, Any]]:
    """Cumulative stages of the depthkit loader at res: where its time per sample goes."""
    aug, gpu = bench.augment, device != "cpu"
    geometry = replace(aug, p_color=0.0, p_gray=0.0, p_grid=0.0)
    stages: list[tuple[str, Callable[[], Epochs]]] = [  # each loader made just before its turn
        ("decode only (read + 3 JPEGs)", lambda: floor_epochs(bench, res, gpu)),
        ("+ backgrounds, scaling (no augmentation)",
         lambda: depthkit_epochs(bench, res, device, augment=None)),
        ("+ geometry (flip, rotate-90, shift-scale-rotate)",
         lambda: depthkit_epochs(bench, res, device, augment=geometry)),
        ("+ colour (one-of, to-gray)",
         lambda: depthkit_epochs(bench, res, device, augment=replace(aug, p_grid=0.0))),
        ("+ grid distortion (= full)", lambda: depthkit_epochs(bench, res, device)),
    ]
    rows, before = [], 0.0
    for name, make in stages:
        r = measure(make(), bench, cuda=gpu)
        ms = 1000 / r["samples_per_s"]
        rows.append({"stage": name, **r, "ms_per_sample": ms, "added_ms": ms - before})
        before = ms
    return rows


def make_data(root: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """(source folder, shard folder) under root, made unless a finished set is there."""
    src, shards = root / "school", root / "shards"
    if (shards / "manifest.json").is_file():
        return src, shards
    t = time.perf_counter()
    synthesize(src, SynthConfig(bgs=args.bgs, fgs=args.fgs, positions=args.positions, res=224,
                                seed=0), workers=os.cpu_count() or 1, progress=False)
    write_shards([src], ShardConfig(out=shards, resolutions=RESOLUTIONS, shard_size=256,
                                    progress=False))
    print(f"data: {time.perf_counter() - t:.0f}s to synthesize + shard "
          f"{args.bgs * args.fgs * 2 * args.positions} samples into {root}", file=sys.stderr)
    return src, shards


def _cell(m: dict | None, startup: bool = True) -> str:
    if m is None:
        return "-"
    return f"{m['samples_per_s']:,.0f}" + (f" ({m['startup_s']:.1f})" if startup else "")


def _per_cpu(m: dict | None) -> str:
    return f"{m['samples_per_cpu_s']:,.0f}" if m and m["samples_per_cpu_s"] else "-"


def _ratio(a: dict | None, b: dict | None) -> str:
    return f"{a['samples_per_s'] / b['samples_per_s']:.2f}x" if a and b else "-"


def print_tables(result: dict[str, Any], workers: int) -> None:
    gpu, cpu = "cuda" in result["devices"], "cpu" in result["devices"]
    print(f"\nloader throughput, samples/s (steady state; start-up s in brackets), batch "
          f"{result['args']['batch']}, {workers} threads/workers, {os.cpu_count()} CPU cores, "
          f"{'CUDA ' + result['env']['cuda'] if result['env']['cuda'] else 'no GPU'}")
    head = "| res |"
    if cpu:
        head += (f" depthkit cpu | albumentations ({workers} workers) | Pillow baseline "
                 f"({workers} workers) | decode floor | cpu/albumentations |")
    if gpu:
        head += " depthkit gpu | gpu decode floor |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in result["rows"]:
        line = f"| {r['res']} |"
        if cpu:
            line += (f" {_cell(r['depthkit_cpu'])} | {_cell(r['albumentations'])} | "
                     f"{_cell(r['pillow'])} | {_cell(r['floor_cpu'], False)} | "
                     f"{_ratio(r['depthkit_cpu'], r['albumentations'])} |")
        if gpu:
            line += f" {_cell(r['depthkit_gpu'])} | {_cell(r['floor_gpu'], False)} |"
        print(line)
    if cpu:
        print("\nsamples per CPU-second (every thread and worker process; load-independent-ish):")
        print("| res | depthkit cpu | albumentations | Pillow baseline | decode floor |")
        print("|---|---|---|---|---|")
        for r in result["rows"]:
            print(f"| {r['res']} | " + " | ".join(_per_cpu(r[k]) for k in (
                "depthkit_cpu", "albumentations", "pillow", "floor_cpu")) + " |")
    for device, rows in result["breakdown"].items():
        print(f"\nwhere the time goes, depthkit {device} at {result['args']['breakdown_res']} px:")
        print("| stage | samples/s | ms/sample | added ms/sample | samples per CPU-s |\n"
              "|---|---|---|---|---|")
        for s in rows:
            print(f"| {s['stage']} | {s['samples_per_s']:,.0f} | {s['ms_per_sample']:.2f} | "
                  f"{s['added_ms']:+.2f} | {_per_cpu(s)} |")
    for note in result["notes"]:
        print(f"note: {note}")
    env = result["env"]
    print(f"\npython {env['python']}, torch {env['torch']}, DALI {env['dali']}, albumentations "
          f"{env['albumentations']}, load average {env['load_before']} -> {env['load_after']}")


def environment() -> dict[str, Any]:
    try:
        import albumentations
        import cv2

        albu = f"{albumentations.__version__} (cv2 {cv2.__version__})"
    except ImportError:
        albu = None
    return {"python": platform.python_version(), "torch": torch.__version__,
            "dali": dali.__version__, "albumentations": albu, "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "load_before": [round(x, 2) for x in os.getloadavg()]}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bgs", type=int, default=4)
    ap.add_argument("--fgs", type=int, default=10)
    ap.add_argument("--positions", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--res", default=",".join(map(str, RESOLUTIONS)), help="e.g. 64,224")
    ap.add_argument("--threads", type=int, default=2,
                    help="DALI threads of depthkit = DataLoader workers of the baselines")
    ap.add_argument("--epochs", type=int, default=2, help="at least this many epochs each")
    ap.add_argument("--seconds", type=float, default=2.0, help="and at least this long each")
    ap.add_argument("--devices", default="auto",
                    help="cpu, cuda or cpu,cuda (auto: cpu, plus cuda when present)")
    ap.add_argument("--breakdown-res", type=int, default=224, help="0: no breakdown")
    ap.add_argument("--data", type=Path, default=None, help="keep (and reuse) the data here")
    ap.add_argument("--json", type=Path, default=None, help="write every figure here")
    return ap.parse_args()


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Every measurement; the figures so far are written to --json after each one."""
    src, shards = make_data(root, args)
    norm = {k: v for k, v in load_manifest(shards)["stats"].items() if k in ("bg", "fgbg")}
    bench = Bench(src, shards, norm, AugmentConfig(), args.batch, args.threads, args.epochs,
                  args.seconds)
    env = environment()
    devices = pick_devices(args.devices, env["cuda"] is not None)
    notes = []
    if "cpu" in devices and not env["albumentations"]:
        notes.append(f"albumentations column skipped: {INSTALL_HINT}")
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    result: dict[str, Any] = {"env": env, "args": settings, "devices": list(devices),
                              "rows": [], "breakdown": {}, "notes": notes}

    def save() -> None:
        env["load_after"] = [round(x, 2) for x in os.getloadavg()]
        if args.json is not None:
            args.json.write_text(json.dumps(result, indent=1))

    for res in (int(r) for r in args.res.split(",")):
        result["rows"].append(measure_res(bench, res, devices))
        save()
        print(f"done {res} px", file=sys.stderr, flush=True)
    for device in devices if args.breakdown_res else ():
        result["breakdown"][device] = breakdown(bench, args.breakdown_res, device)
        save()
    return result


def pick_devices(spec: str, cuda: bool) -> tuple[str, ...]:
    """--devices as a tuple; "auto" = cpu, plus cuda when present."""
    if spec == "auto":
        return ("cuda", "cpu") if cuda else ("cpu",)
    devices = tuple(d for d in ("cuda", "cpu") if d in spec.split(","))
    if "cuda" in devices and not cuda:
        raise SystemExit("error: --devices cuda: torch sees no CUDA device")
    return devices


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)  # leave the cores to DALI's threads / the DataLoader workers
    if args.data is not None:
        result = run(args, args.data)
    else:
        with tempfile.TemporaryDirectory(prefix="dk-loader-bench-") as tmp:
            result = run(args, Path(tmp))
    print_tables(result, args.threads)


if __name__ == "__main__":
    main()
