"""The steady-state training step reads nothing from the device: only the log step does.

Each step is counted on its own (conftest.CountPerStep): the counter a batch opens sees that
step's copy to the device, forward, loss, backward, optimiser step and `Trainer._on_step`.
The runs take the CUDA optimiser (fused): the CPU's default one counts its steps in host
tensors whose reads the counter cannot tell from device reads (on CUDA they stay host reads).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from depthkit.core.dist import DistInfo
from depthkit.loader.batches import LoaderRequest
from depthkit.loader.memory import TensorLoader, tensor_loader_factory
from depthkit.model import create_model
from depthkit.train import (
    LossConfig,
    Stage,
    TrainConfig,
    TrainState,
    build_criterion,
    fit,
    train_one_epoch,
    validate,
)
from depthkit.train.optim import build_optimizer, build_scheduler
from depthkit.train.runtime import Runtime

from .conftest import CountPerStep, read_counter

STEADY = 6  # steps counted after the warm-up step
LOG_EVERY = STEADY + 2  # step 1 warms up, steps 2..7 are steady, step 8 logs


@pytest.fixture
def fused_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trainer builds the fused optimiser it builds on CUDA."""
    monkeypatch.setattr(Runtime, "fused_optimizer", property(lambda rt: True))


def _counted_run(tmp_path: Path, toy_config, toy_data, counter: type, **changes) -> list[list]:
    """The host reads of each training step of a 1-epoch toy run (index 0: step 1)."""
    counters: list = []
    base = tensor_loader_factory(toy_data())

    def factory(req: LoaderRequest):
        loader = base(req)
        return CountPerStep(loader, counter, counters) if req.train else loader

    cfg = toy_config(tmp_path, **{"stages": (Stage(32, 1),), "batch_size": 4,
                                  "log_every": LOG_EVERY, "image_every": 0, "save_every": 0,
                                  **changes})
    fit(cfg, factory)
    return [c.ops for c in counters]


def test_steady_steps_do_not_read_the_device_and_the_log_step_does(
    tmp_path: Path, toy_config, toy_data, count_syncs, fused_on_cpu
) -> None:
    steps = _counted_run(tmp_path, toy_config, toy_data, read_counter(count_syncs))
    assert len(steps) == 12  # 48 samples, batch 4
    assert steps[1:1 + STEADY] == [[]] * STEADY, steps[1:1 + STEADY]
    assert "tolist" in steps[LOG_EVERY - 1]  # the log step reads (the counter sees reads)
    assert steps[LOG_EVERY] == []


def test_a_save_step_reads_and_the_steps_around_it_do_not(
    tmp_path: Path, toy_config, toy_data, count_syncs, fused_on_cpu
) -> None:
    steps = _counted_run(tmp_path, toy_config, toy_data, read_counter(count_syncs),
                         save_every=3)
    assert steps[2] and steps[5]  # steps 3 and 6 save (weights checked: a host read)
    assert steps[1] == steps[3] == steps[4] == []


def _toy_state(optimizer: str, fused: bool, scaler: bool) -> TrainState:
    torch.manual_seed(0)
    model = create_model("diffunet", widths=(8, 16, 24, 32), stem=8)
    cfg = TrainConfig(shards=Path("unused"), optimizer=optimizer, lr=1e-3)
    opt = build_optimizer(cfg, model, fused=fused)
    sched, per_step = build_scheduler(cfg, opt, 100)
    return TrainState(model, opt, sched, torch.amp.GradScaler("cpu", enabled=scaler),
                      per_step_scheduler=per_step)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_the_fused_optimizer_keeps_the_grad_scalers_inf_check_on_the_device(
    optimizer: str, toy_data, count_syncs
) -> None:
    """fp16's GradScaler (enabled here on the CPU) reads its inf flag on the host in
    `step` unless the optimiser is fused; the fused step is read-free."""
    rt = Runtime(torch.device("cpu"), None, False, DistInfo())
    criterion = build_criterion(LossConfig())
    loader = TensorLoader(toy_data(), 8)
    reads = {}
    for fused in (False, True):
        counters: list = []
        state = _toy_state(optimizer, fused, scaler=True)
        train_one_epoch(state, CountPerStep(loader, count_syncs, counters), criterion, rt)
        reads[fused] = [c.ops for c in counters[1:]]
    assert reads[True] == [[]] * 5
    assert all("_local_scalar_dense" in ops for ops in reads[False])


def test_cuda_runs_take_the_fused_optimizer() -> None:
    cuda = Runtime(torch.device("cuda", 0), None, True, DistInfo())
    cpu = Runtime(torch.device("cpu"), None, False, DistInfo())
    assert cuda.fused_optimizer and not cpu.fused_optimizer
    for name in ("adamw", "sgd"):
        cfg = TrainConfig(shards=Path("unused"), optimizer=name)
        assert build_optimizer(cfg, torch.nn.Linear(2, 2), fused=True).defaults["fused"] is True


def test_validation_reads_the_device_once_at_the_end(toy_data, count_syncs) -> None:
    rt = Runtime(torch.device("cpu"), None, False, DistInfo())
    torch.manual_seed(0)
    model = create_model("diffunet", widths=(8, 16, 24, 32), stem=8)
    counters: list = []
    loader = TensorLoader(toy_data(), 8, shuffle=False, drop_last=False)
    counter = read_counter(count_syncs)
    with counter() as whole:
        val = validate(model, CountPerStep(loader, counter, counters), build_criterion(
            LossConfig()), rt)
    assert len(counters) == 6 and all(c.ops == [] for c in counters), [c.ops for c in counters]
    assert "tolist" in whole.ops  # the one read, after the last batch
    assert val["loss"] > 0 and 0 <= val["mask_iou"] <= 1


def cuda_sync_counter(base: type) -> type:
    """`read_counter(base)` that also records CUDA's own word for a synchronising call
    (`torch.cuda.set_sync_debug_mode("warn")`) as "cuda sync: <message>"."""
    import warnings

    class CudaSyncCounter(read_counter(base)):
        def __enter__(self):
            self._warnings = warnings.catch_warnings(record=True)
            self._caught = self._warnings.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            return super().__enter__()

        def __exit__(self, *exc: object) -> None:
            super().__exit__(*exc)
            torch.cuda.set_sync_debug_mode("default")
            self._warnings.__exit__(*exc)
            self.ops += [f"cuda sync: {w.message}" for w in self._caught
                         if "synchroniz" in str(w.message)]

    return CudaSyncCounter


@pytest.mark.gpu
@pytest.mark.parametrize("amp_dtype", ["fp16", "bf16"])
def test_steady_cuda_steps_do_not_sync(
    tmp_path: Path, toy_config, toy_data, count_syncs, amp_dtype: str
) -> None:
    """On the GPU, with the optimiser CUDA runs build (fused) and fp16's grad scaler: no host
    read and no synchronising CUDA call in a steady step; the log step does read."""
    data = {k: v.cuda() for k, v in toy_data().items()}  # batches on the GPU, as DALI's are
    counters: list = []
    base = tensor_loader_factory(data)

    def factory(req: LoaderRequest):
        loader = base(req)
        return CountPerStep(loader, cuda_sync_counter(count_syncs), counters) if (
            req.train) else loader

    cfg = toy_config(tmp_path, stages=(Stage(32, 1),), batch_size=4, log_every=LOG_EVERY,
                     device="cuda", amp=True, amp_dtype=amp_dtype)
    fit(cfg, factory)
    steps = [c.ops for c in counters]
    assert len(steps) == 12
    assert steps[1:1 + STEADY] == [[]] * STEADY, steps[1:1 + STEADY]
    assert steps[LOG_EVERY - 1], "the log step reads the loss: the counter must see it"
