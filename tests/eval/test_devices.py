"""eval and predict put the model and the loader on the one device `pick_device` chose,
as a full device string (cuda:N), checked here with a pretend two-GPU machine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from depthkit.eval import EvalConfig, PredictConfig, prepare, prepare_predict
from depthkit.eval import evaluate as evaluate_mod
from depthkit.eval import predict as predict_mod
from depthkit.model import checkpoint as checkpoint_mod
from depthkit.model.checkpoint import load_model


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Path) -> dict[str, list[str]]:
    """CUDA reported up with 2 devices; the model load and the loader build record the device
    they are given (and stay on the CPU). Returns the records."""
    seen: dict[str, list[str]] = {"model": [], "loader": [], "norm": []}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    model, meta = load_model(tiny_checkpoint)

    def fake_load(path: Path, device: str = "cpu"):  # noqa: ANN202
        seen["model"].append(str(device))
        return model, meta

    class FakeLoader:
        norm = meta["norm"]  # the model's: eval builds no re-normalisation constants

    def fake_build(cfg):  # noqa: ANN001, ANN202
        seen["loader"].append(cfg.device)
        return FakeLoader()

    def fake_norm(norm, device):  # noqa: ANN001, ANN202
        seen["norm"].append(str(device))
        return norm

    monkeypatch.setattr(checkpoint_mod, "load_model", fake_load)
    monkeypatch.setattr(evaluate_mod, "shard_loader", lambda: fake_build)
    monkeypatch.setattr(predict_mod, "device_norm", fake_norm, raising=False)
    return seen


def test_eval_loader_and_model_share_the_full_device(two_gpus, tiny_checkpoint, shard_root
                                                     ) -> None:
    run = prepare(EvalConfig(checkpoint=tiny_checkpoint, shards=shard_root, device="cuda:1"))
    assert run.device == torch.device("cuda", 1)
    assert two_gpus["model"] == two_gpus["loader"] == ["cuda:1"]  # not the bare "cuda"


def test_eval_bare_cuda_names_one_index_for_both(two_gpus, tiny_checkpoint, shard_root) -> None:
    run = prepare(EvalConfig(checkpoint=tiny_checkpoint, shards=shard_root, device="cuda"))
    assert run.device.type == "cuda" and run.device.index is not None
    assert two_gpus["model"] == two_gpus["loader"] == [str(run.device)]


def test_predict_model_and_inputs_share_the_full_device(two_gpus, tiny_checkpoint, tmp_path
                                                        ) -> None:
    img = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(img)
    run = prepare_predict(PredictConfig(checkpoint=tiny_checkpoint, bg=img, fgbg=img,
                                        out=tmp_path / "out", device="cuda:1"))
    assert run.device == torch.device("cuda", 1)
    assert two_gpus["model"] == two_gpus["norm"] == ["cuda:1"]
