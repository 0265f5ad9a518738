"""`depthkit synth`: naming, determinism, exact masks and depth, resume, errors."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthkit.core.errors import DepthkitError
from depthkit.source.naming import fg_index, is_flipped
from depthkit.synth.dataset import (
    SynthConfig,
    group_of,
    nnn_of,
    normalize_depth,
    render_sample,
    sample_paths,
    scene_for,
    sprite_for,
    synthesize,
)

SMALL = SynthConfig(bgs=2, fgs=2, positions=2, res=48, seed=3, lossless=True)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _gray(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_naming_inverts_to_the_readers_derivation():
    seen = set()
    for fg in range(25):
        for flip in (False, True):
            for pos in range(20):
                g, n = group_of(fg), nnn_of(fg, flip, pos)
                assert fg_index(g, n) == fg and is_flipped(n) is flip
                seen.add((g, n))
    # with 20 positions every group holds NNN 1..400 exactly once, like the original
    assert {n for g, n in seen if g == 1} == set(range(1, 401))
    assert sorted({g for g, _ in seen}) == [1, 11, 21]
    assert sample_paths(102, 13, True, 4, False) == (
        "fg_bg/102/011/145.jpg", "fg_bg_mask/102/011/145.jpg", "Output/102/011/145.jpg")
    with pytest.raises(ValueError):
        nnn_of(0, False, 20)


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    synthesize(tmp_path / "a", SMALL, workers=1, progress=False)
    synthesize(tmp_path / "b", SMALL, workers=2, progress=False)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(a) == 2 + 3 * SMALL.samples + 1  # bgs, three files per sample, synth.json
    assert a == b
    other = SynthConfig(**{**SMALL.__dict__, "seed": 4})
    synthesize(tmp_path / "c", other, workers=1, progress=False)
    c = _files(tmp_path / "c")
    assert a.keys() == c.keys()
    assert a["fg_bg/001/001/001.jpg"] != c["fg_bg/001/001/001.jpg"]


@pytest.fixture(scope="module")
def lossless(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lossless")
    synthesize(root, SMALL, workers=1, progress=False)
    return root


def _samples(cfg: SynthConfig):
    for bg in range(1, cfg.bgs + 1):
        for fg in range(cfg.fgs):
            for flip in (False, True):
                for pos in range(cfg.positions):
                    yield bg, fg, flip, pos


def _pasted_alpha(comp, fg: int, flip: bool, cfg: SynthConfig = SMALL) -> np.ndarray:
    """The alpha (uint8, res x res) pasted for a sample, re-derived from sprite + placement."""
    p, res = comp.placement, cfg.res
    sprite = sprite_for(cfg.seed, fg, res)
    alpha = (sprite.alpha * 255 + 0.5).astype(np.uint8)
    if flip:
        alpha = alpha[:, ::-1]
    alpha = np.asarray(Image.fromarray(alpha).resize((p.width, p.height), Image.BILINEAR))
    canvas = np.zeros((res + 2 * p.height, res + 2 * p.width), dtype=np.uint8)
    canvas[p.top + p.height:p.top + 2 * p.height, p.left + p.width:p.left + 2 * p.width] = alpha
    return canvas[p.height:p.height + res, p.width:p.width + res]


def _shadow_box(comp, res: int) -> np.ndarray:
    """Pixels the contact shadow under the object may darken (its bounding box, 1 px slack)."""
    p = comp.placement
    yy, xx = np.mgrid[0:res, 0:res] + 0.5
    rx, ry = 0.6 * p.width + 1, max(1.5, 0.12 * p.width)
    return (np.abs(xx - p.u) <= 2 * rx + 1) & (np.abs(yy - p.v) <= 2 * ry + 1)


def test_mask_is_exactly_the_pasted_alpha(lossless):
    for bg, fg, flip, pos in _samples(SMALL):
        comp = render_sample(SMALL, bg, fg, flip, pos)
        alpha = _pasted_alpha(comp, fg, flip)
        want = alpha >= 128  # the majority-coverage rule, not alpha > 0
        assert (alpha > 0).sum() > want.sum()  # the soft rim exists and is left out
        # Tolerance: PIL resizes RGBA premultiplied, so alpha alone may differ by one level
        # at the very edge; allow at most 2% of the object's pixels there.
        diff = want != comp.mask
        assert diff.sum() <= max(2, 0.02 * want.sum())
        assert comp.mask.sum() > 0
        _, mask_path, _ = sample_paths(bg, fg, flip, pos, True)
        stored = _gray((lossless / mask_path).read_bytes())
        assert set(np.unique(stored)) <= {0, 255}
        assert np.array_equal(stored == 255, comp.mask)  # PNG: exact


def test_depth_inside_the_mask_is_the_objects_floor_depth(lossless):
    for bg, fg, flip, pos in _samples(SMALL):
        comp = render_sample(SMALL, bg, fg, flip, pos)
        scene = scene_for(SMALL.seed, bg, SMALL.res)
        p = comp.placement
        # The object's depth is the floor's depth where its feet stand ...
        assert p.z == pytest.approx(float(scene.camera.floor_depth(p.v)), rel=1e-6)
        assert np.all(comp.depth[comp.mask] == np.float32(p.z))
        assert np.array_equal(comp.depth[~comp.mask], scene.depth[~comp.mask])
        # ... which the rendered floor agrees with at the foot pixel (depth ~ 1/row: 1 row slack)
        row, col = int(p.v), int(min(max(p.u, 0), SMALL.res - 1))
        if scene.floor[row, col]:
            ratio = scene.depth[row, col] / p.z
            assert 1 - 2 / (row + 0.5 - scene.camera.cy) < ratio < 1 + 1 / (p.v - scene.camera.cy)
        # Stored: min-max normalised, near = dark; one value over the whole object.
        _, _, depth_path = sample_paths(bg, fg, flip, pos, True)
        stored = _gray((lossless / depth_path).read_bytes())
        lo, hi = comp.depth.min(), comp.depth.max()
        assert np.array_equal(stored, normalize_depth(comp.depth))
        assert stored.min() == 0 and stored.max() == 255
        assert len(np.unique(stored[comp.mask])) == 1
        assert stored[comp.mask][0] == round(float((p.z - lo) / (hi - lo) * 255))


def test_fgbg_differs_from_bg_only_at_the_object_and_its_shadow():
    for bg, fg, flip, pos in _samples(SMALL):
        comp = render_sample(SMALL, bg, fg, flip, pos)
        scene = scene_for(SMALL.seed, bg, SMALL.res)
        changed = np.any(comp.fgbg != scene.image, axis=-1)
        shadow = _shadow_box(comp, SMALL.res)
        soft_rim = _pasted_alpha(comp, fg, flip) > 0  # soft pastes blend in the rim too
        assert not np.any(changed & ~soft_rim & ~shadow)
        assert changed[comp.mask].mean() > 0.5


def test_jpeg_mask_thresholds_back_except_at_edges(tmp_path):
    cfg = SynthConfig(bgs=1, fgs=2, positions=2, res=64, seed=1)
    synthesize(tmp_path, cfg, progress=False)
    for _, fg, flip, pos in _samples(cfg):
        comp = render_sample(cfg, 1, fg, flip, pos)
        _, mask_path, _ = sample_paths(1, fg, flip, pos, False)
        jpeg = _gray((tmp_path / mask_path).read_bytes()) >= 128
        # Explicit tolerance: JPEG ringing may flip pixels only on the mask's boundary
        # (a pixel whose 4-neighbourhood holds both classes).
        m = np.pad(comp.mask, 1, mode="edge")
        edge = (m[1:-1, 1:-1] != m[:-2, 1:-1]) | (m[1:-1, 1:-1] != m[2:, 1:-1]) | (
            m[1:-1, 1:-1] != m[1:-1, :-2]) | (m[1:-1, 1:-1] != m[1:-1, 2:])
        wrong = jpeg != comp.mask
        assert not np.any(wrong & ~edge)


def test_rerun_resumes_and_mixed_options_are_refused(tmp_path):
    out = tmp_path / "o"
    cfg = SynthConfig(bgs=1, fgs=2, positions=1, res=32, seed=0)
    first = synthesize(out, cfg, progress=False)
    assert first.samples == 4 and first.skipped == 0
    before = _files(out)
    (out / "fg_bg_mask/001/001/001.jpg").unlink()
    again = synthesize(out, cfg, progress=False)
    assert again.skipped > 0 and again.samples < 4
    assert _files(out) == before
    assert not [p for p in out.rglob(".*tmp*")]
    with pytest.raises(DepthkitError, match="other options"):
        synthesize(out, SynthConfig(bgs=1, fgs=2, positions=1, res=32, seed=9), progress=False)


def test_archives_leave_no_temp_files(tmp_path):
    for archive, names in (("7z", {"bg.7z", "fgbg.7z", "fgbgmask.7z", "Densedepth.7z"}),
                           ("zip", {"dataset.zip"})):
        out = tmp_path / archive
        synthesize(out, SynthConfig(bgs=1, fgs=1, positions=1, res=32, archive=archive),
                   progress=False)
        assert {p.name for p in out.iterdir()} == names | {"synth.json"}


@pytest.mark.parametrize("opts, message", [
    (["--positions", "21"], "--positions must be in 1..20"),
    (["--bgs", "0"], "--bgs must be at least 1"),
])
def test_cli_rejects_bad_options_in_one_line(tmp_path, opts, message):
    run = subprocess.run([sys.executable, "-m", "depthkit", "synth", str(tmp_path / "x"), *opts],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [f"error: {run.stderr.strip()[7:]}"]
    assert message in run.stderr


def test_cli_archive_is_checked_while_parsing(tmp_path):
    """--archive 7z|zip is a choice: the parser refuses others (usage error, exit 2)."""
    run = subprocess.run([sys.executable, "-m", "depthkit", "synth", "-o", str(tmp_path / "x"),
                          "--archive", "rar"], capture_output=True, text=True)
    assert run.returncode == 2 and "'rar' is not one of '7z'" in run.stderr
    assert not (tmp_path / "x").exists()


def test_cli_writes_the_7z_set_the_reader_enumerates(tmp_path):
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "depthkit", "synth", str(out), "--bgs", "2",
                          "--fgs", "2", "--positions", "2", "--res", "32", "--archive", "7z",
                          "--workers", "1", "--quiet"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "synth: 16 samples" in run.stderr
    from depthkit.source.open import open_source
    from depthkit.source.sample import Sample

    with open_source(out) as src:
        assert sum(isinstance(s, Sample) for s in src.samples()) == 16


def test_pastes_are_hard_or_soft_and_both_occur():
    kinds = set()
    cfg = SynthConfig(bgs=2, fgs=4, positions=2, res=48, seed=3, lossless=True)
    for bg, fg, flip, pos in _samples(cfg):
        comp = render_sample(cfg, bg, fg, flip, pos)
        alpha = _pasted_alpha(comp, fg, flip, cfg)
        changed = np.any(comp.fgbg != scene_for(cfg.seed, bg, cfg.res).image, axis=-1)
        rim = (alpha > 0) & ~comp.mask & ~_shadow_box(comp, cfg.res)
        if rim.any():
            kind = "soft" if changed[rim].any() else "hard"
            assert comp.hard == (kind == "hard")  # the flag tools split results by
            kinds.add(kind)
    assert kinds == {"soft", "hard"}


def test_fgs_per_bg_spreads_the_cutouts_over_many_rooms(tmp_path):
    cfg = SynthConfig(bgs=5, fgs=4, positions=1, res=32, seed=0, fgs_per_bg=2, lossless=True)
    assert cfg.samples == 5 * 2 * 2
    assert [cfg.fgs_of(bg) for bg in range(1, 6)] == [[0, 1], [2, 3], [0, 1], [2, 3], [0, 1]]
    made = synthesize(tmp_path, cfg, progress=False)
    assert made.samples == 20 and made.skipped == 0
    from depthkit.source.open import open_source
    from depthkit.source.sample import Sample

    with open_source(tmp_path) as src:
        pairs = {(s.bg, s.fg) for s in src.samples() if isinstance(s, Sample)}
    assert pairs == {(bg, fg) for bg in range(1, 6) for fg in cfg.fgs_of(bg)}
    assert len(list((tmp_path / "bg_final").iterdir())) == 5  # every room's image, once
    assert synthesize(tmp_path, cfg, progress=False).skipped == 20  # resumes like the rest


def test_fgs_per_bg_of_all_or_more_is_the_full_product():
    full = SynthConfig(bgs=3, fgs=4, positions=1)
    assert SynthConfig(bgs=3, fgs=4, positions=1, fgs_per_bg=9).samples == full.samples
    assert SynthConfig(bgs=3, fgs=4, positions=1, fgs_per_bg=4).fgs_of(2) == full.fgs_of(2)
    with pytest.raises(DepthkitError, match="--fgs-per-bg"):
        SynthConfig(fgs_per_bg=0).validate()


def test_surface_map_labels_what_the_pixels_show():
    from depthkit.synth.scene import SURFACE_NAMES

    for bg in (1, 2, 3):
        scene = scene_for(0, bg, 48)
        assert scene.surface.shape == (48, 48)
        assert set(np.unique(scene.surface)) <= set(range(len(SURFACE_NAMES)))
        assert np.all(scene.surface[scene.floor] == SURFACE_NAMES.index("floor"))
        floor = scene.surface == SURFACE_NAMES.index("floor")
        # most of the bottom row is floor; the top row, above the horizon, never is
        assert floor[-1].mean() > 0.5
        top = scene.surface[0]
        assert not np.any(top == SURFACE_NAMES.index("floor"))
