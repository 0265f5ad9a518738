"""The original layout's naming: fg index, flip, sample keys, member names."""

from __future__ import annotations

import pytest

from depthkit.shard import schema
from depthkit.source.member import Member, parse_member
from depthkit.source.naming import fg_index, is_flipped, sample_key
from depthkit.source.sample import Problem


@pytest.mark.parametrize("nnn, fg, flip", [(1, 0, False), (20, 0, False), (21, 0, True),
                                           (40, 0, True), (41, 1, False), (61, 1, True),
                                           (381, 9, True), (400, 9, True)])
def test_fg_index_and_flip_follow_the_original_naming(nnn, fg, flip):
    m = parse_member(f"fg_bg/102/011/{nnn:03d}.jpg")
    assert isinstance(m, Member) and (m.bg, m.group, m.nnn) == (102, 11, nnn)
    assert fg_index(11, nnn) == 10 + fg
    assert is_flipped(nnn) is flip


def test_sample_key_has_no_dots_and_the_shard_schema_uses_the_same():
    assert sample_key(102, 11, 45) == "b000102_g011_n045"
    assert schema.sample_key is sample_key


def test_member_names_outside_the_layout_are_problems_or_ignored():
    assert parse_member("readme.txt") is None
    assert parse_member("fg_bg/001/001/.001.jpg.tmp") is None
    assert isinstance(parse_member("fg_bg/001/002/001.jpg"), Problem)
    assert isinstance(parse_member("fg_bg/001/001/401.jpg"), Problem)
    assert isinstance(parse_member("../fg_bg/001/001/001.jpg"), Problem)
    assert parse_member("001/001/001.jpg", "mask") == Member("mask", 1, 1, 1,
                                                              "fg_bg_mask/001/001/001.jpg")
    assert isinstance(parse_member("fg_bg/001/001/001.jpg", "mask"), Problem)
