"""DDP on CPU: 2 processes with gloo train a few steps; weights agree, data shares are disjoint,
validation with unequal shares completes with one process's metrics, steady steps read nothing
from the device."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from depthkit.core.dist import DistInfo
from depthkit.loader.batches import LoaderRequest
from depthkit.loader.memory import TensorLoader, tensor_loader_factory
from depthkit.model import create_model
from depthkit.train import LossConfig, Stage, TrainConfig, build_criterion, fit, validate
from depthkit.train.runtime import Runtime

from .conftest import CountPerStep, LoaderWrapper, read_counter

N_SAMPLES = 48
N_VAL = 9  # rank 0 gets 5 val samples (2 batches of 4), rank 1 gets 4 (1 batch)
WORLD = 2
LOG_EVERY = 4  # of the 6 steps per rank: 4 logs and 6 ends the epoch; 2, 3, 5 are steady
TIMEOUT_S = 600  # a rank left waiting in a collective would hang the test: fail it instead


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data(n: int = N_SAMPLES, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "bg": torch.randn(n, 3, 32, 32, generator=g),
        "fgbg": torch.randn(n, 3, 32, 32, generator=g),
        "mask": (torch.rand(n, 1, 32, 32, generator=g) > 0.7).float(),
        "depth": torch.rand(n, 1, 32, 32, generator=g),
        "index": torch.arange(n),  # which samples each rank saw (the model ignores it)
    }


class Recording(LoaderWrapper):
    """Wraps a loader and records the sample indices it yields (training batches only)."""

    def __init__(self, loader, seen: list[int]) -> None:
        super().__init__(loader)
        self.seen = seen

    def __iter__(self):
        for batch in self.loader:
            self.seen.extend(batch["index"].tolist())
            yield batch


def _worker(rank: int, port: int, tmp: str) -> None:
    import os

    from tests.conftest import SyncCounter

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    base = tensor_loader_factory(_data(), _data(N_VAL, seed=1))
    seen: list[int] = []
    counters: list = []
    val_batches: list[int] = []

    def factory(req: LoaderRequest):
        loader = base(req)
        if not req.train:
            val_batches.append(len(loader))
            return loader
        return CountPerStep(Recording(loader, seen), read_counter(SyncCounter), counters)

    # Each rank gets its own out folder so the test can see that only rank 0 writes.
    cfg = TrainConfig(shards=Path(tmp) / "unused", out=Path(tmp) / f"run{rank}",
                      stages=(Stage(32, 1),), batch_size=4, optimizer="sgd", lr=0.05,
                      device="cpu", val_every=1, log_every=LOG_EVERY, image_every=0,
                      save_every=0)
    result = fit(cfg, factory)
    torch.save({"seen": seen, "state": result["model"].state_dict(),
                "val": [{k: v for k, v in h.items() if k.startswith("val_")}
                        for h in result["history"]],
                "val_batches": val_batches, "reads": [c.ops for c in counters],
                "flops": result["flops"]},
               Path(tmp) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """One 2-rank run (module-wide): its folder and what each rank saved."""
    tmp = tmp_path_factory.mktemp("ddp")
    ctx = mp.spawn(_worker, args=(_free_port(), str(tmp)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + TIMEOUT_S
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.kill()
            pytest.fail(f"the {WORLD} ranks did not finish in {TIMEOUT_S} s (a hang)")
    return tmp, [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.slow
def test_two_gloo_ranks_agree_and_split_the_data(ranks) -> None:
    tmp_path, (r0, r1) = ranks
    # disjoint shares that together cover the epoch (48 samples, 6 batches of 4 per rank)
    assert len(r0["seen"]) == len(r1["seen"]) == N_SAMPLES // WORLD
    assert not set(r0["seen"]) & set(r1["seen"])
    assert set(r0["seen"]) | set(r1["seen"]) == set(range(N_SAMPLES))
    # identical weights after 6 DDP steps (buffers too: BN stats are broadcast from rank 0)
    for k, v in r0["state"].items():
        assert torch.allclose(v.float(), r1["state"][k].float(), atol=1e-6), k
    # and they moved away from the initial weights
    torch.manual_seed(0)  # fit() seeds the same way before building the model
    init = create_model("default").state_dict()
    assert any(not torch.allclose(init[k].float(), v.float()) for k, v in r0["state"].items()
               if k in init and v.dtype.is_floating_point)
    # only rank 0 wrote checkpoints and TensorBoard files, and counted the FLOPs
    assert (tmp_path / "run0" / "last.pt").is_file()
    assert not (tmp_path / "run1").exists()
    assert r0["flops"] and r1["flops"] == {}


@pytest.mark.slow
def test_validation_with_unequal_rank_shares_matches_one_process(ranks) -> None:
    _, (r0, r1) = ranks  # the run finishing is half the test: DDP's forward would hang in it
    assert (r0["val_batches"], r1["val_batches"]) == ([2], [1])
    assert r0["val"] == r1["val"]  # reduced over ranks: both report the same
    # the trained model validated in one process on all 9 samples: the same figures
    model = create_model("default")
    model.load_state_dict(r0["state"])
    one = validate(model, TensorLoader(_data(N_VAL, seed=1), 4, shuffle=False, drop_last=False),
                   build_criterion(LossConfig()), Runtime(torch.device("cpu"), None, False,
                                                          DistInfo()))
    ddp = r0["val"][0]
    assert ddp["val_mask_iou"] < 1 and ddp["val_loss"] > 0
    for key in ("loss", "loss_mask", "loss_depth", "mask_iou", "depth_rmse", "samples"):
        if f"val_{key}" in ddp:
            assert ddp[f"val_{key}"] == pytest.approx(one[key], rel=1e-5, abs=1e-7), key


@pytest.mark.slow
def test_steady_ddp_steps_read_nothing_from_the_device(ranks) -> None:
    for saved in ranks[1]:
        reads = saved["reads"]
        assert len(reads) == 6
        assert reads[1] == reads[2] == reads[4] == [], reads  # steps 2, 3, 5
        assert "tolist" in reads[LOG_EVERY - 1]  # the log step: the ranks agree there
