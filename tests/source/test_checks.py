"""The one sample size rule: the mask matches the fgbg, the depth is within
max(2 px, 2%) of it per side; the source check and the shard conversion agree on it."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from depthkit.shard.convert import convert_sample
from depthkit.source.checks import bg_problem, check_images, depth_slack, size_problem


def _jpeg(size: tuple[int, int], mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 128).save(buf, "JPEG")
    return buf.getvalue()


def test_depth_may_differ_a_little_but_mask_must_match():
    fgbg, mask223, depth224 = _jpeg((223, 223), "RGB"), _jpeg((223, 223)), _jpeg((224, 224))
    assert check_images(fgbg, mask223, depth224) is None  # the original's 223/224 quirk
    assert check_images(fgbg, _jpeg((224, 224)), depth224) == (
        "mask size 224x224 differs from fgbg 223x223")
    assert "depth size 200x200" in check_images(fgbg, mask223, _jpeg((200, 200)))
    # a depth 1 px smaller is accepted too (as `depthkit shard` always accepted it)
    assert check_images(fgbg, mask223, _jpeg((222, 222))) is None


def test_depth_slack_is_2_px_or_2_percent():
    assert depth_slack((64, 64)) == 2
    assert depth_slack((223, 223)) == 4
    assert depth_slack((500, 100)) == 10
    assert size_problem((223, 223), (223, 223), (219, 227)) is None
    assert size_problem((223, 223), (223, 223), (218, 223)) == (
        "depth size 218x223 differs from fgbg 223x223")
    assert size_problem((223, 223), (223, 223), (223, 228)) is not None


@pytest.mark.parametrize("depth_side", [200, 218, 219, 222, 223, 224, 227, 228])
def test_source_check_and_shard_conversion_use_the_same_rule(depth_side):
    fgbg, mask, depth = _jpeg((223, 223), "RGB"), _jpeg((223, 223)), _jpeg((depth_side,) * 2)
    source_reason = check_images(fgbg, mask, depth)
    shard = convert_sample("k", fgbg, mask, depth, (64,))
    assert source_reason == shard.reason
    assert (shard.kind == "size") is (source_reason is not None)


def test_undecodable_images_are_named():
    good = _jpeg((8, 8), "RGB")
    assert check_images(good, b"junk", _jpeg((8, 8))).startswith("mask does not decode")
    assert bg_problem(b"junk").startswith("background does not decode")
    assert bg_problem(good) is None
