"""Tests of the tar writer: deterministic bytes, tarfile-equal headers, DALI-equal indexes."""

from __future__ import annotations

import struct
import tarfile

import pytest

from depthkit.shard.tario import index_text, list_members, write_tar


def test_tar_is_deterministic_readable_and_index_matches_wds2idx(tmp_path):
    items = [("k1.fgbg.jpg", b"x" * 700), ("k1.bgid", struct.pack("<i", 7)),
             ("k2.fgbg.jpg", b""), ("k2.bgid", b"\0\0\0\0"), ("k3.meta.json", b"{}")]
    a = write_tar(tmp_path / "a.tar", tmp_path / "a.idx", items)
    b = write_tar(tmp_path / "b.tar", tmp_path / "b.idx", items)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert a.sha256 == b.sha256 and a.samples == 3 and a.bytes % 10240 == 0
    with tarfile.open(tmp_path / "a.tar") as tar:
        got = [(m.name, tar.extractfile(m).read(), m.mtime, m.uid, m.mode) for m in tar]
    assert [(n, d) for n, d, *_ in got] == items
    assert {(t, u, mo) for *_, t, u, mo in got} == {(0, 0, 0o644)}
    wds2idx = pytest.importorskip("wds2idx")
    with wds2idx.IndexCreator(str(tmp_path / "a.tar"), str(tmp_path / "w.idx"),
                              verbose=False) as ic:
        ic.create_index()
    assert (tmp_path / "a.idx").read_text() == (tmp_path / "w.idx").read_text()
    assert index_text(list_members(tmp_path / "a.tar")) == (tmp_path / "a.idx").read_text()


@pytest.mark.parametrize(("name", "size"), [("a.b", 0), ("b000001_g001_n001.fgbg.jpg", 12345),
                                           ("x" * 100, 7), ("d/y.meta.json", 2**33 - 1)])
def test_fast_tar_header_equals_tarfiles(name, size):
    from depthkit.shard.tario import tar_header

    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = size, 0, 0o644, 0, 0
    info.uname = info.gname = ""
    assert tar_header(name, size) == info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")


def test_write_tar_failure_leaves_no_file(tmp_path):
    def items():
        yield "k.fgbg.jpg", b"abc"
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_tar(tmp_path / "a.tar", tmp_path / "a.idx", items())
    assert list(tmp_path.iterdir()) == []
