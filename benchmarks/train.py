"""Training-step throughput: the full step fed by the depthkit loader vs the in-memory ceiling.

For each model and resolution it measures samples/s of
  - ceiling: forward + loss + backward + optimiser step on batches already on the device
             (`depthkit.loader.memory.TensorLoader` over a few device-resident batches);
  - full:    the same step fed by the DALI shard loader (needs --shards, or --make-shards to
             synthesise and shard a small set first), ONE loader iterated over consecutive
             epochs (its pipeline is reset per epoch, not rebuilt);
and prints forward GFLOPs per sample (depthkit.model.forward_flops), the achieved TFLOP/s
(3 x forward x samples/s), ceiling/full, the projected time of a 400k-sample epoch and the
bf16 compute floor of that epoch at --peak-tflops (default 790 = H200 bf16 dense). On CUDA the
clocks are read only after torch.cuda.synchronize().

    python benchmarks/train.py                                  # CPU, ceiling only
    python benchmarks/train.py --make-shards /tmp/bench-shards  # + loader-fed step
    python benchmarks/train.py --device cuda --amp --make-shards /tmp/bs --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from depthkit.core.dist import DistInfo
from depthkit.loader.memory import TensorLoader
from depthkit.model import count_parameters, create_model, forward_flops
from depthkit.train.config import TrainConfig
from depthkit.train.loop import TrainState, train_one_epoch
from depthkit.train.losses import build_criterion
from depthkit.train.runtime import Runtime, pick_amp_dtype

EPOCH = 400_000  # samples of the original set: the epoch the projections are for
IN_MEMORY_BATCHES = 4  # distinct batches the ceiling cycles through


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # timing needs the queued kernels finished


def make_state(name: str, rt: Runtime, compile_: bool) -> TrainState:
    torch.manual_seed(0)
    model = create_model(name).to(rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)
    wrapped = torch.compile(model) if compile_ else model
    return TrainState(wrapped, opt, sched, scaler, per_step_scheduler=True)


def fake_data(n: int, res: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"bg": torch.randn(n, 3, res, res, generator=g),
            "fgbg": torch.randn(n, 3, res, res, generator=g),
            "mask": (torch.rand(n, 1, res, res, generator=g) > 0.9).float(),
            "depth": torch.rand(n, 1, res, res, generator=g)}


def endless(loader: Any) -> Iterator[dict[str, torch.Tensor]]:
    """The batches of one loader over consecutive epochs (set_epoch before each), without end."""
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        n = 0
        for batch in loader:
            n += 1
            yield batch
        if n == 0:
            raise RuntimeError("the loader yielded no batch (fewer samples than one batch?)")
        epoch += 1


class Take:
    """The next `steps` batches of an endless stream (what one timed call trains on)."""

    def __init__(self, batches: Iterator[dict[str, torch.Tensor]], steps: int) -> None:
        self.batches, self.steps = batches, steps

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for _ in range(self.steps):
            yield next(self.batches)


def timed(state: TrainState, batches: Iterator, rt: Runtime, steps: int, batch: int) -> float:
    """samples/s of `steps` training steps on the next batches of the stream."""
    crit = build_criterion()
    sync(rt.device)
    t0 = time.perf_counter()
    train_one_epoch(state, Take(batches, steps), crit, rt)
    sync(rt.device)
    return steps * batch / (time.perf_counter() - t0)


def rate(args: argparse.Namespace, state: TrainState, batches: Iterator, rt: Runtime,
         batch: int) -> float:
    """Median samples/s of --repeats timed runs, after --warmup steps (and compilation)."""
    timed(state, batches, rt, args.warmup, batch)
    return statistics.median(timed(state, batches, rt, args.steps, batch)
                             for _ in range(args.repeats))


def shard_batches(args: argparse.Namespace, shards: Path, res: int, rt: Runtime,
                  batch: int) -> Iterator:
    from depthkit.loader import AugmentConfig, LoaderConfig, build_loader

    return endless(build_loader(LoaderConfig(
        shards=shards, split="train", res=res, batch_size=batch, augment=AugmentConfig(),
        device=str(rt.device), num_threads=args.threads, channels_last=rt.channels_last)))


def measure(args: argparse.Namespace, name: str, res: int, rt: Runtime,
            shards: Path | None) -> dict[str, Any]:
    batch = args.batch_size or (32 if rt.device.type == "cpu" else {64: 512, 128: 256}.get(res, 96))
    state = make_state(name, rt, args.compile)
    fwd = forward_flops(create_model(name), res)
    data = rt.to_device(fake_data(IN_MEMORY_BATCHES * batch, res))
    ceiling = rate(args, state, endless(TensorLoader(data, batch)), rt, batch)
    floor_min = EPOCH * 3 * fwd / (args.peak_tflops * 1e12) / 60
    row: dict[str, Any] = {
        "model": name, "res": res, "batch": batch, "gflops_fwd": fwd / 1e9,
        "ceiling_sps": ceiling, "ceiling_tflops": 3 * fwd * ceiling / 1e12,
        "ceiling_epoch_min": EPOCH / ceiling / 60,
        "peak_tflops": args.peak_tflops, "floor_epoch_min_at_peak": floor_min}
    if shards is not None and res in shard_resolutions(shards):
        full = rate(args, state, shard_batches(args, shards, res, rt, batch), rt, batch)
        row.update(full_sps=full, full_tflops=3 * fwd * full / 1e12,
                   ceiling_over_full=ceiling / full, full_epoch_min=EPOCH / full / 60,
                   full_epoch_over_floor=EPOCH / full / 60 / floor_min)
    return row


def shard_resolutions(shards: Path) -> list[int]:
    """Resolutions a shard folder holds (the loader-fed step is measured only at those)."""
    from depthkit.shard.manifest import load_manifest, resolutions

    return resolutions(load_manifest(shards))


def make_shards(root: Path, res: list[int]) -> Path:
    """Synthesise and shard a small set (a few hundred samples) for the loader-fed runs."""
    from depthkit.shard import ShardConfig, write_shards
    from depthkit.shard.plan import SplitConfig
    from depthkit.synth.dataset import SynthConfig, synthesize

    if (root / "shards" / "manifest.json").is_file():
        return root / "shards"
    synthesize(root / "src", SynthConfig(bgs=4, fgs=20, positions=4, res=224, seed=0))
    write_shards([root / "src"], ShardConfig(out=root / "shards", resolutions=tuple(res),
                                             split=SplitConfig("random", 0.1, 0), progress=True))
    return root / "shards"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="default,unetexp")
    p.add_argument("--res", default="64,128,224")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels_last memory format (default: on for CUDA, off on CPU)")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="loader threads")
    p.add_argument("--shards", type=Path, default=None)
    p.add_argument("--make-shards", type=Path, default=None, help="folder to synth+shard into")
    p.add_argument("--peak-tflops", type=float, default=790.0,
                   help="the chip's bf16 dense peak, for the compute floor (790: H200)")
    p.add_argument("--max-gflops", type=float, default=None,
                   help="skip (model, res) whose forward GFLOPs exceed this (default: 30 on CPU)")
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args()


def runtime(args: argparse.Namespace) -> Runtime:
    device = torch.device("cuda" if (args.device == "auto" and torch.cuda.is_available())
                          else ("cpu" if args.device == "auto" else args.device))
    cfg = TrainConfig(shards=Path("."), amp=args.amp)
    cl = args.channels_last if args.channels_last is not None else device.type == "cuda"
    return Runtime(device=device, amp_dtype=pick_amp_dtype(cfg, device), channels_last=cl,
                   dist=DistInfo())


def print_table(rows: list[dict[str, Any]], peak: float) -> None:
    print("| model | res | batch | GFLOPs fwd | ceiling samples/s | full samples/s | "
          f"ceiling/full | TFLOP/s (full, else ceiling) | 400k epoch (full, else ceiling) | "
          f"bf16 floor at {peak:g} TFLOP/s | epoch/floor |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        fed = "full_sps" in r
        full = f"{r['full_sps']:,.0f}" if fed else "-"
        ratio = f"{r['ceiling_over_full']:.2f}x" if fed else "-"
        tflops = r["full_tflops"] if fed else r["ceiling_tflops"]
        epoch = r["full_epoch_min"] if fed else r["ceiling_epoch_min"]
        over = f"{r['full_epoch_over_floor']:.1f}x" if fed else "-"
        print(f"| {r['model']} | {r['res']} | {r['batch']} | {r['gflops_fwd']:.2f} | "
              f"{r['ceiling_sps']:,.0f} | {full} | {ratio} | {tflops:.3g} | {epoch:,.1f} min | "
              f"{r['floor_epoch_min_at_peak']:.2f} min | {over} |")


def main() -> None:
    args = parse_args()
    rt = runtime(args)
    device = rt.device
    resolutions = [int(r) for r in args.res.split(",")]
    shards = args.shards
    if shards is None and args.make_shards is not None:
        shards = make_shards(args.make_shards, resolutions)
    max_gflops = args.max_gflops or (30.0 if device.type == "cpu" else float("inf"))
    env = {"torch": torch.__version__, "python": platform.python_version(),
           "device": torch.cuda.get_device_name(device) if device.type == "cuda"
           else f"CPU x{torch.get_num_threads()} threads ({platform.processor() or 'cpu'})",
           "amp": str(rt.amp_dtype), "channels_last": rt.channels_last, "compile": args.compile,
           "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
           "epoch_samples": EPOCH, "peak_tflops": args.peak_tflops}
    print(json.dumps(env), file=sys.stderr)
    rows = []
    for name in args.models.split(","):
        print(f"{name}: {count_parameters(create_model(name)):,} parameters", file=sys.stderr)
        for res in resolutions:
            if forward_flops(create_model(name), res) / 1e9 > max_gflops:
                print(f"  skip {name} @ {res} px (> {max_gflops} GFLOPs; --max-gflops)",
                      file=sys.stderr)
                continue
            row = measure(args, name, res, rt, shards)
            rows.append(row)
            if args.json:  # after every row: a run cut short keeps what it measured
                args.json.write_text(json.dumps({"env": env, "rows": rows}, indent=1))
            print("  " + "  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in row.items()), file=sys.stderr, flush=True)
    print_table(rows, args.peak_tflops)


if __name__ == "__main__":
    main()
