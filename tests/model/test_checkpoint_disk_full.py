"""A checkpoint save on a full disk: a one-line DiskFullError naming the checkpoint with about
its size, no temp file, and the checkpoint written before it still whole."""

from __future__ import annotations

import pytest
import torch

from depthkit.core.atomic import is_tmp_name
from depthkit.core.diskspace import DiskFullError
from depthkit.model.checkpoint import load_checkpoint, save_checkpoint, tensor_bytes


def state(step: int) -> dict:
    layer = torch.nn.Linear(100, 100)
    return {"model": layer.state_dict(), "optimizer": {"state": {0: {"m": torch.zeros(100)}}},
            "meta": {"step": step}}


def test_full_disk_keeps_the_last_checkpoint(tmp_path, small_disk):
    path = tmp_path / "run" / "last.pt"
    save_checkpoint(path, state(1))
    size = path.stat().st_size
    small_disk(tmp_path, capacity=size + size // 2)  # room for half a second checkpoint
    with pytest.raises(DiskFullError) as caught:
        save_checkpoint(path, state(2))  # torch.save turns the OSError into a RuntimeError
    text = str(caught.value)
    needs = tensor_bytes(state(2))
    assert text.startswith(f"disk full writing {path}: ") and "\n" not in text
    assert f"this file needs about {needs / 1e3:.0f} kB more" in text
    assert [p for p in tmp_path.rglob("*") if is_tmp_name(p.name)] == []
    assert load_checkpoint(path)["meta"] == {"step": 1}
