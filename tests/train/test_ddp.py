"""DDP on CPU: 2 processes with gloo train a few steps; weights agree, data shares are disjoint."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from depthkit.loader.batches import LoaderRequest
from depthkit.loader.memory import tensor_loader_factory
from depthkit.model import create_model
from depthkit.train import Stage, TrainConfig, fit

N_SAMPLES = 48
WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "bg": torch.randn(N_SAMPLES, 3, 32, 32, generator=g),
        "fgbg": torch.randn(N_SAMPLES, 3, 32, 32, generator=g),
        "mask": (torch.rand(N_SAMPLES, 1, 32, 32, generator=g) > 0.7).float(),
        "depth": torch.rand(N_SAMPLES, 1, 32, 32, generator=g),
        "index": torch.arange(N_SAMPLES),  # which samples each rank saw (the model ignores it)
    }


class Recording:
    """Wraps a loader and records the sample indices it yields (training batches only)."""

    def __init__(self, loader, seen: list[int]) -> None:
        self.loader, self.seen, self.norm = loader, seen, loader.norm

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            self.seen.extend(batch["index"].tolist())
            yield batch


def _worker(rank: int, port: int, tmp: str) -> None:
    import os

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    base = tensor_loader_factory(_data())
    seen: list[int] = []

    def factory(req: LoaderRequest):
        loader = base(req)
        return Recording(loader, seen) if req.train else loader

    # Each rank gets its own out folder so the test can see that only rank 0 writes.
    cfg = TrainConfig(shards=Path(tmp) / "unused", out=Path(tmp) / f"run{rank}",
                      stages=(Stage(32, 1),), batch_size=4, optimizer="sgd", lr=0.05,
                      device="cpu", val_every=1, log_every=2, image_every=0)
    result = fit(cfg, factory)
    torch.save({"seen": seen, "state": result["model"].state_dict(),
                "val_iou": [h.get("val_mask_iou") for h in result["history"]]},
               Path(tmp) / f"rank{rank}.pt")


@pytest.mark.slow
def test_two_gloo_ranks_agree_and_split_the_data(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
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
    # validation metrics were reduced over ranks: both report the same IoU
    assert r0["val_iou"] == pytest.approx(r1["val_iou"])
    # only rank 0 wrote checkpoints and TensorBoard files
    assert (tmp_path / "run0" / "last.pt").is_file()
    assert not (tmp_path / "run1").exists()
