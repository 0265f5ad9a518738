"""Training-step throughput: the full step fed by the depthkit loader vs the model-only ceiling.

For each model and resolution it measures samples/s of
  - ceiling: forward + loss + backward + optimiser step on one batch already on the device;
  - full:    the same step fed by `depthkit.loader.pipeline` (DALI) from shards (needs --shards, or
             --make-shards to synthesise and shard a small set first),
and prints forward GFLOPs per sample, achieved TFLOP/s (3 x forward), the full/ceiling ratio
and the projected time of a 400k-sample epoch. On a GPU it also prints the epoch floor at the
chip's peak (--peak-tflops, default 790 = H200 bf16 dense).

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
from pathlib import Path

import torch

from depthkit.core.dist import DistInfo
from depthkit.model import count_parameters, create_model, forward_flops
from depthkit.train.config import TrainConfig
from depthkit.train.loop import TrainState, train_one_epoch
from depthkit.train.losses import build_criterion
from depthkit.train.runtime import Runtime, pick_amp_dtype

EPOCH = 400_000


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


def fake_batch(batch: int, res: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"bg": torch.randn(batch, 3, res, res, generator=g),
            "fgbg": torch.randn(batch, 3, res, res, generator=g),
            "mask": (torch.rand(batch, 1, res, res, generator=g) > 0.9).float(),
            "depth": torch.rand(batch, 1, res, res, generator=g)}


class Repeat:
    """A loader that yields the same device-resident batch `steps` times (the ceiling)."""

    def __init__(self, batch: dict[str, torch.Tensor], steps: int) -> None:
        self.batch, self.steps = batch, steps

    def __iter__(self):
        for _ in range(self.steps):
            yield self.batch


class Take:
    """The first `steps` batches of a loader, restarting epochs as needed."""

    def __init__(self, loader, steps: int) -> None:
        self.loader, self.steps = loader, steps

    def __iter__(self):
        n = 0
        while n < self.steps:
            for b in self.loader:
                yield b
                n += 1
                if n >= self.steps:
                    return


def timed(state: TrainState, loader, rt: Runtime, steps: int, batch: int) -> float:
    crit = build_criterion()
    sync(rt.device)
    t0 = time.perf_counter()
    train_one_epoch(state, loader, crit, rt)
    sync(rt.device)
    return steps * batch / (time.perf_counter() - t0)


def measure(args, name: str, res: int, rt: Runtime, shards: Path | None) -> dict:
    batch = args.batch_size or (32 if rt.device.type == "cpu" else {64: 512, 128: 256}.get(res, 96))
    state = make_state(name, rt, args.compile)
    fwd = forward_flops(create_model(name), res)
    data = rt.to_device(fake_batch(batch, res))
    timed(state, Repeat(data, args.warmup), rt, args.warmup, batch)  # warm-up (and compile)
    ceiling = statistics.median(
        timed(state, Repeat(data, args.steps), rt, args.steps, batch) for _ in range(args.repeats)
    )
    row = {"model": name, "res": res, "batch": batch, "gflops_fwd": fwd / 1e9,
           "ceiling_sps": ceiling, "ceiling_tflops": 3 * fwd * ceiling / 1e12,
           "ceiling_epoch_min": EPOCH / ceiling / 60}
    if shards is not None and res in shard_resolutions(shards):
        from depthkit.loader import AugmentConfig, LoaderConfig, build_loader

        loader = build_loader(LoaderConfig(
            shards=shards, split="train", res=res, batch_size=batch, augment=AugmentConfig(),
            device=str(rt.device), num_threads=args.threads, channels_last=rt.channels_last))
        timed(state, Take(loader, args.warmup), rt, args.warmup, batch)
        full = statistics.median(
            timed(state, Take(loader, args.steps), rt, args.steps, batch)
            for _ in range(args.repeats))
        row.update(full_sps=full, full_over_ceiling=ceiling / full,
                   full_epoch_min=EPOCH / full / 60)
    if rt.device.type == "cuda":
        row["floor_epoch_min_at_peak"] = EPOCH * 3 * fwd / (args.peak_tflops * 1e12) / 60
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="default,unetexp")
    p.add_argument("--res", default="64,128,224")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--channels-last", action="store_true", default=None)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="loader threads")
    p.add_argument("--shards", type=Path, default=None)
    p.add_argument("--make-shards", type=Path, default=None, help="folder to synth+shard into")
    p.add_argument("--peak-tflops", type=float, default=790.0)
    p.add_argument("--max-gflops", type=float, default=None,
                   help="skip (model, res) whose forward GFLOPs exceed this (default: 30 on CPU)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    device = torch.device("cuda" if (args.device == "auto" and torch.cuda.is_available())
                          else ("cpu" if args.device == "auto" else args.device))
    cfg = TrainConfig(shards=Path("."), amp=args.amp)
    cl = args.channels_last if args.channels_last is not None else device.type == "cuda"
    rt = Runtime(device=device, amp_dtype=pick_amp_dtype(cfg, device), channels_last=cl,
                 dist=DistInfo())
    resolutions = [int(r) for r in args.res.split(",")]
    shards = args.shards
    if shards is None and args.make_shards is not None:
        shards = make_shards(args.make_shards, resolutions)
    max_gflops = args.max_gflops or (30.0 if device.type == "cpu" else float("inf"))
    env = {"torch": torch.__version__, "python": platform.python_version(),
           "device": torch.cuda.get_device_name(device) if device.type == "cuda"
           else f"CPU x{torch.get_num_threads()} threads ({platform.processor() or 'cpu'})",
           "amp": str(rt.amp_dtype), "channels_last": cl, "compile": args.compile,
           "steps": args.steps, "repeats": args.repeats}
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
            print("  " + "  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in row.items()), file=sys.stderr, flush=True)
    print("| model | res | batch | GFLOPs fwd | ceiling samples/s | full samples/s | "
          "ceiling/full | 400k epoch (full, else ceiling) | TFLOP/s at ceiling |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        full = f"{r['full_sps']:,.0f}" if "full_sps" in r else "-"
        ratio = f"{r['full_over_ceiling']:.2f}x" if "full_sps" in r else "-"
        epoch = r.get("full_epoch_min", r["ceiling_epoch_min"])
        print(f"| {r['model']} | {r['res']} | {r['batch']} | {r['gflops_fwd']:.2f} | "
              f"{r['ceiling_sps']:,.0f} | {full} | {ratio} | {epoch:,.1f} min | "
              f"{r['ceiling_tflops']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"env": env, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
