"""`depthkit eval` and `depthkit predict` on cuda:0 agree with their CPU runs.

Needs CUDA (skipped elsewhere, see tests/conftest.py). The tiny checkpoint is barely trained,
so the test compares the two devices, not quality.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthkit import cli

pytestmark = pytest.mark.gpu

# CPU vs GPU eval metrics. The inputs differ a little: on the GPU DALI decodes the fgbg, mask
# and depth JPEGs with nvJPEG, on the CPU with libjpeg-turbo (a few levels apart at some
# pixels), and cuDNN may run fp32 convolutions in TF32 (~1e-3 relative). Ratios in [0, 1] may
# move by a hundredth; RMSE, MAE and abs_rel by 1 %. depth_log10 and depth_valid_fraction
# hinge on the target pixels at exactly 0 (excluded below DEPTH_EPS): a level's decoding
# difference there moves a pixel in or out with a log10 error of ~2.4, hence a looser bound.
ABS_TOL = {"mask_iou": 0.01, "mask_iou_per_image": 0.01, "mask_dice": 0.01, "mask_acc": 0.01,
           "depth_delta1": 0.01, "depth_delta2": 0.01, "depth_delta3": 0.01,
           "depth_ssim": 0.01, "depth_valid_fraction": 0.01, "depth_log10": 0.05}
REL_TOL = {"depth_rmse": 0.01, "depth_mae": 0.01, "depth_abs_rel": 0.01}
# predict decodes with Pillow on both devices: only the model's arithmetic differs.
DEPTH_LEVELS = 3  # 8-bit depth PNGs at most this many levels apart
MASK_AGREE = 0.99  # share of mask pixels equal on both devices


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> str:
    """Run `depthkit ARGS` in-process; asserts success and returns stderr."""
    monkeypatch.setattr(sys, "argv", ["depthkit", *args])
    try:
        cli.main()
    except SystemExit as stop:
        assert not stop.code, capsys.readouterr().err
    return capsys.readouterr().err


def eval_metrics(monkeypatch, capsys, checkpoint: Path, shards: Path, device: str,  # noqa: ANN001
                 out: Path) -> dict:
    out.mkdir()
    run_cli(monkeypatch, capsys, "eval", "-c", str(checkpoint), "-s", str(shards),
            "--split", "train", "--device", device, "--batch-size", "8", "--json",
            str(out / "m.json"), "--grid", str(out / "g.png"), "--quiet")
    assert (out / "g.png").is_file()
    return json.loads((out / "m.json").read_text())


def test_eval_on_cuda_matches_cpu(tiny_checkpoint: Path, shard_root: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture) -> None:
    cpu = eval_metrics(monkeypatch, capsys, tiny_checkpoint, shard_root, "cpu", tmp_path / "c")
    gpu = eval_metrics(monkeypatch, capsys, tiny_checkpoint, shard_root, "cuda:0",
                       tmp_path / "g")
    assert (cpu["device"], gpu["device"]) == ("cpu", "cuda:0")
    assert gpu["samples"] == cpu["samples"] == 22
    assert set(ABS_TOL) | set(REL_TOL) <= set(gpu)
    for key, tol in ABS_TOL.items():
        assert math.isfinite(gpu[key]), key
        assert gpu[key] == pytest.approx(cpu[key], abs=tol), key
    for key, tol in REL_TOL.items():
        assert math.isfinite(gpu[key]), key
        assert gpu[key] == pytest.approx(cpu[key], rel=tol), key


def predict_outputs(monkeypatch, capsys, checkpoint: Path, bg: Path, fgbg: Path,  # noqa: ANN001
                    device: str, out: Path) -> dict[str, np.ndarray]:
    run_cli(monkeypatch, capsys, "predict", "-c", str(checkpoint), "--bg", str(bg), "--fgbg",
            str(fgbg), "-o", str(out), "--device", device, "--quiet")
    arrays = {}
    for path in sorted(out.glob("*_mask.png")) + sorted(out.glob("*_depth.png")):
        with Image.open(path) as im:
            arrays[path.name] = np.asarray(im).astype(np.int16)
    return arrays


def test_predict_on_cuda_matches_cpu(tiny_checkpoint: Path, synth_root: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture) -> None:
    """One background and the folder of its composites, on both devices."""
    bg = sorted((synth_root / "bg_final").glob("*.jpg"))[0]
    folder = next(p for p in sorted((synth_root / "fg_bg" / bg.stem).iterdir()) if p.is_dir())
    cpu = predict_outputs(monkeypatch, capsys, tiny_checkpoint, bg, folder, "cpu",
                          tmp_path / "c")
    gpu = predict_outputs(monkeypatch, capsys, tiny_checkpoint, bg, folder, "cuda:0",
                          tmp_path / "g")
    assert cpu and set(gpu) == set(cpu)
    for name, a in cpu.items():
        b = gpu[name]
        assert a.shape == b.shape, name
        if name.endswith("_mask.png"):
            assert (a == b).mean() >= MASK_AGREE, name
        else:
            assert np.abs(a - b).max() <= DEPTH_LEVELS, name


def test_predict_arrays_on_cuda_are_finite_and_match_cpu(tiny_checkpoint: Path,
                                                         synth_root: Path) -> None:
    import torch

    from depthkit.eval.predict import predict_arrays, read_rgb
    from depthkit.model.checkpoint import load_model

    bg_path = sorted((synth_root / "bg_final").glob("*.jpg"))[0]
    fgbg_path = sorted((synth_root / "fg_bg" / bg_path.stem).rglob("*.jpg"))[0]
    bg, fgbg = read_rgb(bg_path), read_rgb(fgbg_path)
    preds = {}
    for device in ("cpu", "cuda:0"):
        model, meta = load_model(tiny_checkpoint, device=device)
        preds[device] = predict_arrays(model, meta, bg, fgbg, int(meta["res"]),
                                       torch.device(device))
    cpu, gpu = preds["cpu"], preds["cuda:0"]
    for name in ("mask_prob", "depth"):
        a, b = getattr(cpu, name), getattr(gpu, name)
        assert b.shape == fgbg.shape[:2] and np.isfinite(b).all(), name
        assert np.abs(a - b).max() <= 1e-2, name  # TF32 convolutions: ~1e-3 relative
