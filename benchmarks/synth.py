"""Benchmark `depthkit synth`: end-to-end samples/s at 224 px (render + encode + atomic write).

Usage: python benchmarks/synth.py [--workers 2] [--bgs 4 --fgs 20 --positions 10] [--runs 3]

Each run writes a fresh folder dataset (background rooms and cut-outs rendered from
scratch, so their one-off cost is included) and the median run is reported with the config,
the machine and the library versions. It also prints samples per CPU-second of one
in-process run, a figure that does not depend on other load on the machine.
Goal: >= 300 samples/s at 224 px on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import PIL  # noqa: E402

from depthkit.synth.dataset import SynthConfig, synthesize  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bgs", type=int, default=4)
    ap.add_argument("--fgs", type=int, default=20)
    ap.add_argument("--positions", type=int, default=10)
    ap.add_argument("--res", type=int, default=224)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--archive", choices=["7z", "zip"], default=None)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    cfg = SynthConfig(bgs=args.bgs, fgs=args.fgs, positions=args.positions, res=args.res,
                      archive=args.archive)
    rates = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            synthesize(Path(tmp) / "out", cfg, workers=args.workers, progress=False)
            seconds = time.perf_counter() - start
        rates.append(cfg.samples / seconds)
        print(f"run {run + 1}: {cfg.samples} samples in {seconds:.2f} s "
              f"({rates[-1]:.0f} samples/s)", flush=True)
    print(f"synth {args.res} px, {args.bgs} bg x {args.fgs} fg x 2 x {args.positions} positions, "
          f"archive={args.archive or 'folder'}, workers={args.workers}: "
          f"median {statistics.median(rates):.0f} samples/s over {args.runs} runs "
          f"(min {min(rates):.0f}, max {max(rates):.0f})")
    # Load-independent figure: one in-process run, CPU seconds of this process only.
    with tempfile.TemporaryDirectory() as tmp:
        cpu0 = time.process_time()
        synthesize(Path(tmp) / "out", cfg, workers=1, progress=False)
        cpu = time.process_time() - cpu0
    print(f"cpu: {cfg.samples / cpu:.0f} samples per CPU-second in one process "
          f"(x{args.workers} cores = {args.workers * cfg.samples / cpu:.0f} samples/s if the "
          "cores were free)")
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, "
          f"python {platform.python_version()}, numpy {np.__version__}, "
          f"pillow {PIL.__version__}, load avg {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
