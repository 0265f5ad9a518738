"""Benchmark the depthkit loader beside the plain-PyTorch baseline and the decode-only floor.

Usage: python benchmarks/loader.py [--fgs 10 --positions 10] [--batch 64] [--runs 2]

Makes its own synthetic dataset (depthkit.synth.dataset, 224 px JPEG, original layout) and
shards it at 64, 128 and 224 px (depthkit.shard.run), once, in a temp folder. Per resolution,
with the SAME
AugmentConfig (the original list, p=0.5 for the geometric ops):
  depthkit cpu  - build_loader(device="cpu", num_threads=2), full augmentation
  depthkit gpu  - the same with device="cuda" (only when CUDA is present)
  baseline      - torch DataLoader, 2 workers, Pillow decode + per-image augmentation
                  (benchmarks/baseline_loader.py) over the original folder layout
  floor         - DALI CPU read + decode of the same shard bytes (fgbg, mask, depth), nothing else
Throughput is steady state (first batch excluded: pipeline build / worker start-up is printed
separately); median of --runs epochs. Extra rows at 224: no augmentation, and no background bank.
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

import nvidia.dali as dali  # noqa: E402
import torch  # noqa: E402
from nvidia.dali import fn, pipeline_def, types  # noqa: E402

from benchmarks.baseline_loader import baseline_loader  # noqa: E402
from depthkit.loader import AugmentConfig, LoaderConfig, build_loader  # noqa: E402
from depthkit.shard import ShardConfig, schema, write_shards  # noqa: E402
from depthkit.shard.manifest import load_manifest, split_files  # noqa: E402
from depthkit.synth.dataset import SynthConfig, synthesize  # noqa: E402

RESOLUTIONS = (64, 128, 224)


def steady_rate(batches, limit: int | None = None) -> tuple[float, float]:
    """(samples/s after the first batch, seconds to the first batch) of one pass."""
    t0 = time.perf_counter()
    it = iter(batches)
    next(it)
    t1 = time.perf_counter()
    n = 0
    for i, b in enumerate(it):
        n += int(b["bg"].shape[0] if isinstance(b, dict) else b)
        if limit is not None and i + 2 >= limit:
            break
    return n / (time.perf_counter() - t1), t1 - t0


def median_rate(make, runs: int, limit: int | None = None) -> tuple[float, float]:
    rates, starts = zip(*(steady_rate(make(), limit) for _ in range(runs)), strict=True)
    return statistics.median(rates), statistics.median(starts)


def floor_batches(root: Path, res: int, batch: int):
    """Read + decode the three JPEGs of every train sample with DALI on the CPU."""
    entries = split_files(load_manifest(root), res, "train")

    @pipeline_def(batch_size=batch, num_threads=2, device_id=None, seed=0)
    def decode_only():
        f, m, d = fn.readers.webdataset(
            paths=[str(root / e["tar"]) for e in entries],
            index_paths=[str(root / e["index"]) for e in entries],
            ext=[schema.EXT_FGBG, schema.EXT_MASK, schema.EXT_DEPTH], pad_last_batch=True)
        return (fn.decoders.image(f, device="cpu"),
                fn.decoders.image(m, device="cpu", output_type=types.GRAY),
                fn.decoders.image(d, device="cpu", output_type=types.GRAY))

    pipe = decode_only()
    pipe.build()
    n = sum(int(e["samples"]) for e in entries) // batch
    for _ in range(n):
        pipe.run()
        yield batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bgs", type=int, default=4)
    ap.add_argument("--fgs", type=int, default=10)
    ap.add_argument("--positions", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--baseline-batches", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)  # leave the 2 cores to DALI / the workers

    aug = AugmentConfig()
    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory(prefix="dk-loader-bench-") as tmp:
        t = time.perf_counter()
        src = Path(tmp) / "school"
        synthesize(src, SynthConfig(bgs=args.bgs, fgs=args.fgs, positions=args.positions,
                                    res=224, seed=0), workers=os.cpu_count() or 1, progress=False)
        shards = Path(tmp) / "shards"
        write_shards([src], ShardConfig(out=shards, resolutions=RESOLUTIONS, shard_size=256,
                                        progress=False))
        norm = {k: v for k, v in load_manifest(shards)["stats"].items() if k in ("bg", "fgbg")}
        print(f"data: {time.perf_counter() - t:.0f}s to synthesize + shard "
              f"{args.bgs * args.fgs * 2 * args.positions} samples", file=sys.stderr)

        def loader(res: int, **kw):
            cfg = LoaderConfig(shards, res=res, batch_size=args.batch, **{"augment": aug, **kw})
            return build_loader(cfg)

        rows = []
        for res in RESOLUTIONS:
            row = {"res": res}
            row["cpu"] = median_rate(lambda res=res: loader(res), args.runs)
            if cuda:
                row["gpu"] = median_rate(lambda res=res: loader(res, device="cuda"), args.runs)
            row["base"] = median_rate(
                lambda res=res: baseline_loader(src, res, args.batch, aug, norm, workers=2),
                1, limit=args.baseline_batches)
            row["floor"] = median_rate(lambda res=res: floor_batches(shards, res, args.batch),
                                       args.runs)
            rows.append(row)
            print(f"done {res} px", file=sys.stderr)
        extra = {
            "no augmentation": median_rate(lambda: loader(224, augment=None), args.runs),
            "no augmentation, bg decoded per sample":
                median_rate(lambda: loader(224, augment=None, bg_bank=False), args.runs),
        }

    print(f"\nloader throughput, samples/s (steady state; start-up s in brackets), batch "
          f"{args.batch}, {os.cpu_count()} CPU cores, "
          f"{'CUDA ' + torch.cuda.get_device_name() if cuda else 'no GPU'}")
    head = "| res | depthkit cpu | baseline (2 workers) | decode floor | cpu/baseline | cpu/floor |"
    if cuda:
        head += " depthkit gpu |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        cpu, base, floor = r["cpu"][0], r["base"][0], r["floor"][0]
        line = (f"| {r['res']} | {cpu:,.0f} ({r['cpu'][1]:.1f}) | {base:,.0f} ({r['base'][1]:.1f})"
                f" | {floor:,.0f} | {cpu / base:.2f}x | {cpu / floor:.0%} |")
        if cuda:
            line += f" {r['gpu'][0]:,.0f} |"
        print(line)
    print("\n224 px, depthkit cpu variants:")
    for name, (rate, start) in extra.items():
        print(f"  {name}: {rate:,.0f} samples/s ({start:.1f}s start-up)")
    print(f"\npython {platform.python_version()}, torch {torch.__version__}, "
          f"DALI {dali.__version__}, {platform.platform()}")


if __name__ == "__main__":
    main()
