"""Benchmark `depthkit shard`: conversion speed from a folder, a .zip and the .7z set, beside
the floor of merely reading the same source bytes, in CPU time per sample and wall clock.

Usage: python benchmarks/shard.py [--bgs 5 --fgs 20 --positions 10] [--workers 2] [--runs 2]
                                  [--data DIR] [--sources folder,zip,7z] [--multi-res]

Makes its own synthetic dataset with depthkit.synth.dataset (224 px JPEG, like the original) as a
folder, a .zip and the .7z set, in a temp folder (or in --data DIR, kept and reused when it
already holds one of the same config). "read" streams every sample and background through the
layout reader without checks (the bytes any conversion must read: file reads, or 7z
decompression); "shard" is the full `depthkit shard --res 224` (bytes copied, every image
decode-checked, tars + indexes + manifest written). Each source is read once before timing,
so all see a warm page cache.

CPU time is user + system of this process and its reaped children (the worker pool is shut
down, hence reaped, at the end of each run): on a shared machine it is the steadier figure,
and CPU-ms/sample gives the bound on N idle cores as N * 1000 / (CPU ms/sample). A run costs
a fixed part (backgrounds, the channel stats over 256 samples, pool start, manifest) plus a
per-sample part; "marginal" is (CPU of the full run - CPU of a `--limit SMALL` run) /
(samples - SMALL), the per-sample cost that a 400k-sample run sees, and its bound is what
a large set converts at (folder and zip only: a `--limit` run of the .7z set still
decompresses the whole archives, so there it is not a small run). Wall-clock figures are
printed beside it with the load average. Median of --runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import PIL  # noqa: E402

from depthkit.shard import ShardConfig, write_shards  # noqa: E402
from depthkit.source.open import open_source  # noqa: E402
from depthkit.synth.dataset import SynthConfig, synthesize  # noqa: E402

SOURCES = {"folder": ("folder", None), "zip": ("zip", "zip"), "7z": (".7z set", "7z")}


def read_all(src: Path) -> int:
    """Stream every background and sample of a source; return the sample count."""
    n = 0
    with open_source([src]) as source:
        for _ in source.backgrounds():
            pass
        for item in source.samples(check=False):
            n += hasattr(item, "fgbg")
    return n


def cpu_seconds() -> float:
    """User + system CPU of this process and its reaped children (the worker pool)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn, runs: int) -> tuple[float, float, int]:
    """(median wall seconds, median CPU seconds, result of the last call) over `runs` calls."""
    times, cpus, result = [], [], 0
    for _ in range(runs):
        t0, c0 = time.perf_counter(), cpu_seconds()
        result = fn()
        times.append(time.perf_counter() - t0)
        cpus.append(cpu_seconds() - c0)
    return statistics.median(times), statistics.median(cpus), result


def make_data(root: Path, synth: SynthConfig, kinds: list[str], workers: int) -> dict[str, Path]:
    """The synthetic dataset as each source kind under root (reused if already made)."""
    out = {}
    for kind in kinds:
        folder = root / kind
        stamp = folder / ".bench.json"
        want = json.dumps(synth.__dict__, sort_keys=True, default=str)
        if not (stamp.is_file() and stamp.read_text() == want):
            cfg = SynthConfig(**{**synth.__dict__, "archive": SOURCES[kind][1]})
            synthesize(folder, cfg, workers=workers, progress=False)
            stamp.write_text(want)
        out[kind] = folder
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bgs", type=int, default=5)
    ap.add_argument("--fgs", type=int, default=20)
    ap.add_argument("--positions", type=int, default=10)
    ap.add_argument("--res", type=int, default=224)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--shard-size", type=int, default=500)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--data", type=Path, default=None,
                    help="keep the synthetic dataset here and reuse it on later runs")
    ap.add_argument("--sources", default="folder,zip,7z")
    ap.add_argument("--small", type=int, default=300,
                    help="samples of the short run whose CPU is subtracted (>= 256 + val, so "
                         "its stats cost the same)")
    ap.add_argument("--multi-res", action="store_true",
                    help="also time --res 64,128,224 from the folder (re-encodes two copies)")
    args = ap.parse_args()
    kinds = [k for k in args.sources.split(",") if k]
    if unknown := set(kinds) - set(SOURCES):
        ap.error(f"--sources: unknown {', '.join(sorted(unknown))}")
    synth = SynthConfig(bgs=args.bgs, fgs=args.fgs, positions=args.positions, res=args.res)
    with tempfile.TemporaryDirectory(prefix="depthkit-bench-") as tmp:
        tmp_path = Path(tmp)
        t0 = time.perf_counter()
        data = make_data(args.data or tmp_path / "data", synth, kinds, args.workers)
        print(f"data: {synth.samples} samples at {args.res} px as {', '.join(kinds)} "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)
        cases = [(SOURCES[k][0], data[k], (args.res,)) for k in kinds]
        if args.multi_res and "folder" in data:
            cases.append(("folder, 64,128,224", data["folder"], (64, 128, 224)))
        sequential = {SOURCES["7z"][0]}
        rows = []
        loads = []
        for name, src, res in cases:
            read_all(src)  # warm the page cache
            read_s, read_cpu, n = timed(lambda src=src: read_all(src), args.runs)
            counter = iter(range(1000))

            def shard(src=src, res=res, counter=counter, limit=None) -> int:
                out = tmp_path / f"out-{next(counter)}"
                s = write_shards([src], ShardConfig(out=out, resolutions=res,
                                                    shard_size=args.shard_size, limit=limit,
                                                    workers=args.workers, progress=False))
                return s.written + s.rejected

            shard_s, shard_cpu, written = timed(shard, args.runs)
            marginal = float("nan")
            if name not in sequential:
                _, small_cpu, small_n = timed(lambda shard=shard: shard(limit=args.small),
                                              args.runs)
                marginal = 1000 * (shard_cpu - small_cpu) / (n - small_n)
            loads.append(os.getloadavg()[0])
            assert written == n == synth.samples, (written, n)
            rows.append((name, n / read_s, 1000 * read_cpu / n, n / shard_s,
                         1000 * shard_cpu / n, marginal))
            print(f"  {name}: read {n / read_s:,.0f}/s ({1000 * read_cpu / n:.2f} CPU ms), "
                  f"shard {n / shard_s:,.0f}/s ({1000 * shard_cpu / n:.2f} CPU ms/sample, "
                  f"marginal {marginal:.2f}), load {loads[-1]:.1f}", flush=True)
    print()
    cores = 2
    print(f"| source ({synth.samples} samples, {args.res} px) | read CPU ms/sample "
          f"| shard CPU ms/sample, whole run (all processes) | implied bound on {cores} idle "
          f"cores | marginal CPU ms/sample | implied bound, large set "
          f"| read wall (samples/s) | shard wall (samples/s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, read_rate, read_ms, shard_rate, cpu_ms, marginal in rows:
        m = ("n/a | n/a" if marginal != marginal
             else f"{marginal:.2f} | {1000 * cores / marginal:,.0f}/s")
        print(f"| {name} | {read_ms:.2f} | {cpu_ms:.2f} | {1000 * cores / cpu_ms:,.0f}/s | {m} "
              f"| {read_rate:,.0f} | {shard_rate:,.0f} |")
    print()
    print(f"shard --workers {args.workers} --shard-size {args.shard_size}; median of "
          f"{args.runs} runs; wall clock under load avg {min(loads):.1f}-{max(loads):.1f} "
          f"(shared machines give noisy wall-clock figures; the CPU columns are steadier)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus; python "
          f"{platform.python_version()}, pillow {PIL.__version__}")


if __name__ == "__main__":
    main()
