"""Tests of the shard plan: a pure function of keys and seed, by-bg hold-out, option checks."""

from __future__ import annotations

import pytest

from depthkit.core.errors import DepthkitError
from depthkit.shard import schema
from depthkit.shard.plan import SplitConfig, make_plan


def _pairs(n_bg: int, per_bg: int) -> list[tuple[str, int]]:
    return [(schema.sample_key(b, 1, n), b) for b in range(1, n_bg + 1)
            for n in range(1, per_bg + 1)]


def test_plan_is_a_function_of_keys_and_seed():
    pairs = _pairs(5, 40)
    a = make_plan(pairs, SplitConfig("random", 0.1, 0), 30)
    b = make_plan(list(reversed(pairs)), SplitConfig("random", 0.1, 0), 30)
    c = make_plan(pairs, SplitConfig("random", 0.1, 1), 30)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert a.count("val") == 20 and a.count("train") == 180
    sizes = [len(s.keys) for s in a.shards if s.split == "train"]
    assert max(sizes) - min(sizes) <= 1 and max(sizes) <= 30
    keys = [k for s in a.shards for k in s.keys]
    assert sorted(keys) == sorted(k for k, _ in pairs)  # each key exactly once
    # globally shuffled: the first shard mixes backgrounds
    assert len({k[:7] for k in a.shards[0].keys}) > 1


def test_plan_by_bg_holds_out_whole_backgrounds():
    plan = make_plan(_pairs(10, 6), SplitConfig("by-bg", 0.2, 3), 100)
    assert plan.val_bgs is not None and len(plan.val_bgs) == 2
    val_bgs = {int(k[1:7]) for s in plan.shards if s.split == "val" for k in s.keys}
    train_bgs = {int(k[1:7]) for s in plan.shards if s.split == "train" for k in s.keys}
    assert val_bgs == set(plan.val_bgs) and not val_bgs & train_bgs


def test_plan_rejects_bad_options():
    with pytest.raises(DepthkitError, match="--split"):
        SplitConfig("by-fg")
    with pytest.raises(DepthkitError, match="--val-fraction"):
        SplitConfig("random", 1.5)
    with pytest.raises(DepthkitError, match="--shard-size"):
        make_plan(_pairs(1, 2), SplitConfig(), 0)
