"""A damaged shard during training or eval: one line naming the file and sample, exit 2.

Without the pre-flight, DALI segfaults on a tar cut inside its last member and prints a long
traceback naming no file for damage inside a tar (depthkit.shard.preflight).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from depthkit import cli
from depthkit.core.errors import DepthkitError
from depthkit.loader.augment import AugmentConfig
from depthkit.loader.config import LoaderConfig
from depthkit.loader.pipeline import Loader, build_loader
from depthkit.shard.preflight import read_index
from depthkit.train import Stage, TrainConfig, fit

RES = 32
TAR = f"{RES}/train-000001.tar"  # the second of 3 train shards (tests/conftest.py)
VAL = f"{RES}/val-000000.tar"
TINY = {"model": "diffunet", "model_options": {"widths": (8, 16, 24, 32), "stem": 8}}


@pytest.fixture
def shards(shard_root: Path, tmp_path: Path) -> Path:
    """A writable copy of the shared tiny shards."""
    out = tmp_path / "shards"
    shutil.copytree(shard_root, out)
    return out


@pytest.fixture(scope="module")
def checkpoint(shard_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained one step at 32 px (something for eval to run)."""
    out = tmp_path_factory.mktemp("ck") / "run"
    fit(_train_cfg(shard_root, out, max_steps=1))
    return out / "last.pt"


def _train_cfg(shards: Path, out: Path, **kw) -> TrainConfig:
    base = TrainConfig(shards=shards, out=out, stages=(Stage(RES, 1),), batch_size=4,
                       optimizer="adamw", save_every=0, log_every=0, image_every=0,
                       val_every=0, num_threads=1, **TINY)
    return replace(base, **kw)


def _member(shards: Path, tar: str, sample: int, ext: str):
    """(key, Member) of one component of one sample of a tar, from its index."""
    idx = (shards / tar).with_suffix(".idx")
    m = next(m for m in read_index(idx, shards)[sample] if m.ext == ext)
    return m.name.split(".")[0], m


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _eval(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """`depthkit eval ARGS` in-process: (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["depthkit", "eval", *args])
    code = 0
    try:
        cli.main()
    except SystemExit as stop:
        code = int(stop.code or 0)
    return code, capsys.readouterr().err


def _one_error_line(err: str) -> str:
    """The `error:` line, checking it ends stderr and nothing but a progress bar precedes it."""
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), err
    assert all(ln.startswith(("eval ", "verify ")) for ln in lines[:-1]), err
    assert "Traceback" not in err
    return lines[-1]


def _train_loader(shards: Path) -> Loader:
    return build_loader(LoaderConfig(shards, res=RES, batch_size=4, augment=AugmentConfig(),
                                     num_threads=1))


def test_tar_cut_inside_its_last_member_is_one_line_not_a_crash(shards: Path,
                                                                tmp_path: Path) -> None:
    """(a) DALI segfaulted here (exit 139): the last bgid starts inside the file."""
    _, m = _member(shards, TAR, -1, "bgid")
    tar = shards / TAR
    tar.write_bytes(tar.read_bytes()[: m.offset + 2])
    out = tmp_path / "run"
    run = subprocess.run([sys.executable, "-m", "depthkit", "train", "--shards", str(shards),
                          "--res", str(RES), "--epochs", "1", "--batch-size", "4",
                          "--threads", "1", "--val-every", "0", "-o", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: corrupt shard ") and str(tar) in last
    assert f"`depthkit verify -s {shards}`" in last and "Traceback" not in run.stderr
    assert not (out / "last.pt").exists()


def test_truncated_val_tar_fails_eval_in_one_line(shards: Path, checkpoint: Path,
                                                  monkeypatch, capsys) -> None:
    """(a) eval: a tar cut in half."""
    val = shards / VAL
    val.write_bytes(val.read_bytes()[:4096])
    code, err = _eval(monkeypatch, capsys, "-c", str(checkpoint), "-s", str(shards))
    line = _one_error_line(err)
    assert code == 2 and str(val) in line and "the manifest says" in line
    assert "depthkit verify" in line


def test_overwritten_jpeg_stops_training_naming_tar_and_sample(shards: Path,
                                                               tmp_path: Path) -> None:
    """(b) bytes overwritten inside a JPEG (same size): DALI's "nvImageCodec failure"."""
    key, m = _member(shards, TAR, 3, "fgbg.jpg")
    _overwrite(shards / TAR, m.offset + m.size // 2, bytes(64))
    with pytest.raises(DepthkitError) as err:
        fit(_train_cfg(shards, tmp_path / "run"))
    msg = str(err.value)
    assert f"corrupt shard {shards / TAR} (sample {key}): {key}.fgbg.jpg does not decode" in msg
    assert f"`depthkit verify -s {shards}`" in msg and "\n" not in msg


def test_overwritten_jpeg_fails_eval_naming_tar_and_sample(shards: Path, checkpoint: Path,
                                                           monkeypatch, capsys) -> None:
    """(b) eval on the val split."""
    key, m = _member(shards, VAL, 1, "mask.jpg")
    _overwrite(shards / VAL, m.offset, b"\xff" * 16)
    code, err = _eval(monkeypatch, capsys, "-c", str(checkpoint), "-s", str(shards))
    line = _one_error_line(err)
    assert code == 2 and f"{shards / VAL} (sample {key})" in line and "depthkit verify" in line


def test_overwritten_tar_header_names_tar_and_sample(shards: Path) -> None:
    """(c) 1 KiB overwritten from a member's tar header on (a bad disk block)."""
    key, m = _member(shards, TAR, 4, "fgbg.jpg")
    _overwrite(shards / TAR, m.offset - 512, bytes(range(256)) * 4)
    loader = _train_loader(shards)
    with pytest.raises(DepthkitError) as err:  # read in epoch 0, or (dropped there) in epoch 1
        list(loader), list(loader)
    msg = str(err.value)
    assert f"corrupt shard {shards / TAR} (sample {key}): the tar header of {key}" in msg
    assert "depthkit verify" in msg


def test_header_only_damage_is_read_past_and_verify_stops_it(shards: Path,
                                                             tmp_path: Path) -> None:
    """(c, d) DALI reads members by the index, so a damaged header alone leaves the batches
    intact; --verify (the full checksum check) refuses the folder before training."""
    _, m = _member(shards, TAR, 4, "mask.jpg")
    data = bytearray((shards / TAR).read_bytes())
    data[m.offset - 512 + 3] ^= 0x01  # one flipped bit in the member's name
    (shards / TAR).write_bytes(bytes(data))
    assert len(list(_train_loader(shards))) == 5  # 22 // 4, as from intact shards
    out = tmp_path / "run"
    with pytest.raises(DepthkitError, match=r"--verify: .*train-000001\.tar: sha256 differs"):
        fit(_train_cfg(shards, out, verify=True))
    assert not out.exists() or not any(out.rglob("*.pt"))


def test_eval_verify_option(shards: Path, checkpoint: Path, monkeypatch, capsys) -> None:
    """(d) eval --verify: a flipped byte the loader never reads (meta.json)."""
    _, m = _member(shards, VAL, 0, "meta.json")
    data = bytearray((shards / VAL).read_bytes())
    data[m.offset + 2] ^= 0x01
    (shards / VAL).write_bytes(bytes(data))
    code, err = _eval(monkeypatch, capsys, "-c", str(checkpoint), "-s", str(shards), "--verify")
    line = _one_error_line(err)
    assert code == 2 and line.startswith("error: --verify: ") and "val-000000.tar" in line


def test_intact_shards_train_and_eval(shard_root: Path, checkpoint: Path, tmp_path: Path,
                                      monkeypatch, capsys) -> None:
    """(e) the pre-flight and --verify pass intact shards."""
    summary = fit(_train_cfg(shard_root, tmp_path / "run", verify=True, max_steps=2))
    assert summary["steps"] == 2
    code, err = _eval(monkeypatch, capsys, "-c", str(checkpoint), "-s", str(shard_root),
                      "--verify", "--json", str(tmp_path / "m.json"))
    assert code == 0, err


def test_other_loader_errors_are_not_taken_for_damage(shard_root: Path, monkeypatch) -> None:
    """A failure that is not DALI's reading of the data keeps its own error."""
    def boom(self, out):
        raise RuntimeError("boom")

    monkeypatch.setattr(Loader, "_finish", boom)
    with pytest.raises(RuntimeError, match="^boom$"):
        list(_train_loader(shard_root))


def test_dali_failure_without_a_found_culprit_is_still_one_line(shard_root: Path) -> None:
    """Damage Pillow reads past but DALI does not: DALI's reason, and what to run."""
    text = ("Critical error in pipeline:\nError in CPU operator `nvidia.dali.fn.peek_image_shape`"
            ",\nwhich was used in the pipeline definition with the following traceback:\n\n"
            "encountered:\n\nnvImageCodec failure: '#3'\nCurrent pipeline object is no longer "
            "valid.")
    err = _train_loader(shard_root)._data_error(text, 0)
    assert err is not None and "\n" not in str(err)
    assert f"the train shards of {shard_root} at {RES} px (nvImageCodec failure: '#3'); run " \
           f"`depthkit verify -s {shard_root}`" in str(err)
    assert _train_loader(shard_root)._data_error("CUDA error: out of memory", 0) is None
