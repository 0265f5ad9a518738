"""tools/realcheck.py: composites from real photos (hard and feathered pastes), end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from .conftest import load_tool

realcheck = load_tool("realcheck")


def _photos(folder: Path) -> Path:
    """Three smooth 'photos' of distinct colours and a silhouette with a hole (logo.png)."""
    folder.mkdir()
    yy, xx = np.mgrid[0:160, 0:160].astype(np.float32) / 160
    for name, rgb in (("light", (235, 225, 205)), ("dark", (25, 35, 55)), ("mid", (120, 150, 90))):
        img = np.stack([c * (0.6 + 0.4 * xx) * (0.7 + 0.3 * yy) for c in rgb], axis=-1)
        Image.fromarray(img.astype(np.uint8)).save(folder / f"{name}.png")
    logo = np.full((80, 80, 3), 255, dtype=np.uint8)
    logo[10:70, 10:70] = 0
    logo[30:50, 30:50] = 255  # a hole
    Image.fromarray(logo).save(folder / "logo.png")
    return folder


def _ring(mask: np.ndarray) -> np.ndarray:
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown & ~mask


def test_soft_pastes_blend_outside_the_mask_and_hard_ones_do_not(tmp_path: Path):
    photos, shapes = realcheck.load_photos(_photos(tmp_path / "p"))
    assert set(shapes) == {"logo"} and len(photos) == 3
    spill = {}
    for paste in ("hard", "soft"):
        rng = np.random.default_rng(0)
        diffs = []
        for _ in range(6):
            c = realcheck.make_composite(rng, photos, shapes, 64, paste)
            assert c.paste == paste and c.mask.any()
            # Luma: JPEG keeps it at full resolution (chroma is subsampled and bleeds ~2 px).
            d = np.abs((c.fgbg.astype(np.float32) - c.bg) @ np.float32([0.299, 0.587, 0.114]))
            diffs.append(d[_ring(c.mask)].mean())
            assert d[c.mask].mean() > 30  # the pasted texture is another photo
        spill[paste] = float(np.mean(diffs))
    assert spill["hard"] < 0.5 * spill["soft"], spill


def test_realcheck_end_to_end(tmp_path: Path, tiny_checkpoint: Path):
    folder = _photos(tmp_path / "p")
    out = tmp_path / "real.json"
    code = realcheck.main(["--checkpoint", str(tiny_checkpoint), "--images", str(folder),
                           "--n", "8", "--size", "64", "--json", str(out),
                           "--grid", str(tmp_path / "g.png"), "--device", "cpu"])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["samples"] == 8 and 0 <= report["mask_iou"] <= 1
    assert set(report["by_paste"]) == {"hard", "soft"}
    assert sum(v["samples"] for v in report["by_kind"].values()) == 8
    assert Image.open(tmp_path / "g.png").size[0] > 0


def test_realcheck_without_photos_is_one_line(tmp_path: Path, capsys):
    (tmp_path / "empty").mkdir()
    code = realcheck.main(["--checkpoint", str(tmp_path / "none.pt"), "--images",
                           str(tmp_path / "empty")])
    assert code == 2 and "need at least 2 photos" in capsys.readouterr().err
