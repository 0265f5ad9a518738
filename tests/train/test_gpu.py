"""Training on a GPU: AMP (bf16, and fp16 with a grad scaler), steady-state steps that never
make the host wait, a one-process NCCL DDP step and a torch.compile run.

Needs CUDA (skipped elsewhere, see tests/conftest.py). The toy setup is tests/train/conftest.py's,
moved to `device="cuda"`; its batches come from CPU tensors (the trainer copies them over).
"""

from __future__ import annotations

import math
import socket
from pathlib import Path

import pytest
import torch

from depthkit.loader.batches import LoaderRequest
from depthkit.loader.memory import tensor_loader_factory
from depthkit.model import create_model
from depthkit.model.checkpoint import load_checkpoint
from depthkit.train import LossConfig, Stage, build_criterion, fit, pick_amp_dtype

pytestmark = pytest.mark.gpu

TINY = {"widths": (8, 16, 24, 32), "stem": 8}  # the toy config's model options
WARMUP = 2  # steps before the sync check: cuDNN plans, allocator pools, optimiser state


def initial_weights(seed: int) -> dict[str, torch.Tensor]:
    """The toy model as `fit` builds it before training (it seeds torch with cfg.seed)."""
    torch.manual_seed(seed)
    return create_model("diffunet", **TINY).state_dict()


def finite_run(result: dict, grads: bool = True) -> None:
    """The run's losses and weights are finite, on CUDA and trained (moved from their initial
    values); with `grads`, the last step's gradients are there and finite too."""
    assert result["history"], "no epoch recorded"
    assert all(math.isfinite(h["train_loss"] if "train_loss" in h else h["loss"])
               for h in result["history"])
    model = result["model"]
    params = list(model.parameters())
    assert all(p.is_cuda and torch.isfinite(p).all() for p in params)
    init = initial_weights(0)
    assert any(not torch.equal(init[k], v.cpu()) for k, v in model.state_dict().items()
               if v.is_floating_point())
    if grads:
        found = [p.grad for p in params if p.grad is not None]
        assert found, "no gradients"
        assert all(torch.isfinite(g).all() for g in found)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_amp_steps_on_cuda(tmp_path: Path, toy_config, toy_data, dtype: str) -> None:
    cfg = toy_config(tmp_path, device="cuda", amp=True, amp_dtype=dtype, max_steps=3,
                     stages=(Stage(32, 1),))
    want = torch.float16 if dtype == "fp16" else torch.bfloat16
    assert pick_amp_dtype(cfg, torch.device("cuda")) is want
    result = fit(cfg, tensor_loader_factory(toy_data()))
    assert result["steps"] == 3
    scaler = load_checkpoint(tmp_path / "last.pt").get("scaler") or {}  # the mid-epoch save
    if dtype == "bf16":
        assert not scaler  # bf16 needs no grad scaler
        finite_run(result)
    else:  # the grad scaler ran with a finite positive scale
        assert math.isfinite(float(scaler["scale"])) and float(scaler["scale"]) > 0
        # a step the scaler skipped (fp16 overflow at its first scales) leaves inf gradients
        # behind by design; the tracker counts the steps taken since the last skip
        finite_run(result, grads=int(scaler["_growth_tracker"]) > 0)


class SyncDebugged:
    """A training loader whose batches WARMUP+1 .. n-1 are trained under sync debug mode
    "error": a host read, a blocking copy or a data-dependent shape in the step raises. The
    last batch is left out (the epoch's end draws a picture, which reads the device)."""

    def __init__(self, loader, checked: list[int]) -> None:  # noqa: ANN001
        self.loader, self.checked = loader, checked

    def __getattr__(self, name: str):  # noqa: ANN204 - norm, set_epoch, state_dict, ...
        return getattr(self.loader, name)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):  # noqa: ANN204
        n = len(self.loader)
        try:
            for i, batch in enumerate(self.loader):
                checked = WARMUP <= i < n - 1
                torch.cuda.set_sync_debug_mode("error" if checked else 0)
                if checked:
                    self.checked.append(i)
                yield batch
        finally:
            torch.cuda.set_sync_debug_mode(0)


def test_steady_state_steps_do_not_sync(tmp_path: Path, toy_config, toy_data) -> None:
    checked: list[int] = []
    base = tensor_loader_factory(toy_data())

    def factory(req: LoaderRequest):  # noqa: ANN202
        loader = base(req)
        return SyncDebugged(loader, checked) if req.train else loader

    cfg = toy_config(tmp_path, device="cuda", amp=True, amp_dtype="bf16", batch_size=4,
                     stages=(Stage(32, 1),), log_every=1000, image_every=0, save_every=0)
    try:
        result = fit(cfg, factory)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert len(checked) >= 8  # 48 samples, batch 4: steps 3..11 ran under "error"
    finite_run(result)


def test_one_process_nccl_ddp_step(monkeypatch: pytest.MonkeyPatch, toy_data) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from depthkit.model.checkpoint import unwrap

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    device = torch.device("cuda", 0)
    torch.cuda.set_device(device)
    dist.init_process_group("nccl", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = create_model("diffunet", **TINY).to(device)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        ddp = DistributedDataParallel(model, device_ids=[0])
        assert unwrap(ddp) is model
        opt = torch.optim.AdamW(ddp.parameters(), lr=1e-3)
        criterion = build_criterion(LossConfig().filled())
        batch = {k: v[:8].to(device) for k, v in toy_data().items()}
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = ddp(batch["bg"], batch["fgbg"])
        loss, _ = criterion(out, batch)
        loss.backward()  # gradients all-reduced by NCCL
        opt.step()
        torch.cuda.synchronize()
        assert math.isfinite(loss.item())
        assert all(p.grad is not None and torch.isfinite(p.grad).all()
                   for p in model.parameters())
        assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
        t = torch.ones(3, device=device)
        dist.all_reduce(t)
        assert t.tolist() == [1.0, 1.0, 1.0]
    finally:
        dist.destroy_process_group()


def test_compiled_training_run(tmp_path: Path, toy_config, toy_data) -> None:
    """TrainConfig(compile=True): two steps train and last.pt holds the plain model's keys."""
    cfg = toy_config(tmp_path, device="cuda", compile=True, max_steps=2, stages=(Stage(32, 1),))
    result = fit(cfg, tensor_loader_factory(toy_data()))
    assert result["steps"] == 2
    finite_run(result)
    saved = load_checkpoint(tmp_path / "last.pt")["model"]
    assert set(saved) == set(create_model("diffunet", **TINY).state_dict())  # no _orig_mod.
