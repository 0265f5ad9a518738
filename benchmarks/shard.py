"""Benchmark `depthkit shard`: conversion samples/s from a folder and from the .7z set, beside
the floor of merely reading the same source bytes.

Usage: python benchmarks/shard.py [--bgs 5 --fgs 20 --positions 10] [--workers 2] [--runs 2]

Makes its own synthetic dataset with depthkit.synth (224 px JPEG, like the original) as a
folder and as the .7z set, once, in a temp folder. "read" streams every sample and background
through the layout reader without checks (the bytes any conversion must read: file reads, or
7z decompression); "shard" is the full `depthkit shard --res 224` (bytes copied, every image
decode-checked in a process pool, tars + indexes + manifest written). The folder is read once
before timing, so both see a warm page cache. Median of --runs; config, machine and library
versions are printed with the table.
"""

from __future__ import annotations

import argparse
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

from depthkit.layout import open_source  # noqa: E402
from depthkit.shards import ShardConfig, write_shards  # noqa: E402
from depthkit.synth import SynthConfig, synthesize  # noqa: E402


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bgs", type=int, default=5)
    ap.add_argument("--fgs", type=int, default=20)
    ap.add_argument("--positions", type=int, default=10)
    ap.add_argument("--res", type=int, default=224)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--multi-res", action="store_true",
                    help="also time --res 64,128,224 from the folder (re-encodes two copies)")
    args = ap.parse_args()
    synth = SynthConfig(bgs=args.bgs, fgs=args.fgs, positions=args.positions, res=args.res)
    with tempfile.TemporaryDirectory(prefix="depthkit-bench-") as tmp:
        tmp_path = Path(tmp)
        t0 = time.perf_counter()
        folder = tmp_path / "folder"
        synthesize(folder, synth, workers=args.workers, progress=False)
        sevenz = tmp_path / "7z"
        synthesize(sevenz, SynthConfig(**{**synth.__dict__, "archive": "7z"}),
                   workers=args.workers, progress=False)
        print(f"synth: {synth.samples} samples at {args.res} px as a folder and as the .7z set "
              f"in {time.perf_counter() - t0:.1f} s", flush=True)
        src_mb = sum(p.stat().st_size for p in folder.rglob("*.jpg")) / 1e6
        z_mb = sum(p.stat().st_size for p in sevenz.glob("*.7z")) / 1e6
        read_all(folder)  # warm the page cache
        rows = []
        cases = [("folder", folder, (args.res,)), (".7z set", sevenz, (args.res,))]
        if args.multi_res:
            cases.append(("folder, 64,128,224", folder, (64, 128, 224)))
        for name, src, res in cases:
            read_s, read_cpu, n = timed(lambda src=src: read_all(src), args.runs)
            counter = iter(range(1000))

            def shard(src=src, res=res, counter=counter) -> int:
                out = tmp_path / f"out-{next(counter)}"
                s = write_shards([src], ShardConfig(out=out, resolutions=res,
                                                    workers=args.workers, progress=False))
                return s.written + s.rejected

            shard_s, shard_cpu, written = timed(shard, args.runs)
            assert written == n == synth.samples, (written, n)
            rows.append((name, n / read_s, n / shard_s, 1000 * shard_cpu / n))
            print(f"  {name}: read {n / read_s:,.0f}/s, shard {n / shard_s:,.0f}/s "
                  f"({1000 * shard_cpu / n:.2f} CPU ms/sample)", flush=True)
    print()
    cores = len(os.sched_getaffinity(0))
    print(f"| source ({synth.samples} samples, {args.res} px) | read floor (samples/s) "
          f"| shard (samples/s) | shard / read | shard CPU ms/sample (all processes) "
          f"| CPU bound on {cores} idle cores (samples/s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, read_rate, shard_rate, cpu_ms in rows:
        print(f"| {name} | {read_rate:,.0f} | {shard_rate:,.0f} | {shard_rate / read_rate:.2f} "
              f"| {cpu_ms:.2f} | {1000 * cores / cpu_ms:,.0f} |")
    print()
    print(f"data: folder {src_mb:.1f} MB of JPEG, .7z set {z_mb:.1f} MB; shard --workers "
          f"{args.workers}; median of {args.runs} runs")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, load avg "
          f"{os.getloadavg()[0]:.1f} (shared machines give noisy figures); python "
          f"{platform.python_version()}, pillow {PIL.__version__}")


if __name__ == "__main__":
    main()
