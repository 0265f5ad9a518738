"""Shared fixtures: a tiny synthetic dataset in the original layout, its shards, and a toy
checkpoint, each made once per test session and read-only for the tests."""

from __future__ import annotations

import io
import signal
from pathlib import Path

import pytest

from depthkit.synth.dataset import SynthConfig, synthesize


@pytest.fixture(scope="session", autouse=True)
def _ctrl_c_not_ignored():
    """A shell starts background jobs (and some CI runners start tests) with SIGINT ignored,
    which depthkit rightly keeps ignored; the Ctrl-C tests need it live, here and in the
    processes they start (an ignored disposition is inherited, a handler is not)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


# 2 backgrounds x 3 foregrounds x 2 flips x 2 positions = 24 samples at 64 px.
SYNTH_CONFIG = SynthConfig(bgs=2, fgs=3, positions=2, res=64, seed=0)


@pytest.fixture(scope="session")
def synth_config() -> SynthConfig:
    """The config `synth_root` was made with (counts, res, seed)."""
    return SYNTH_CONFIG


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic dataset folder in the original layout (bg_final/, fg_bg/,
    fg_bg_mask/, Output/; JPEG like the original): 24 samples of 64 px, 2 backgrounds.
    Read-only: copy it before changing anything."""
    root = tmp_path_factory.mktemp("synth") / "school"
    synthesize(root, SYNTH_CONFIG, workers=1, progress=False)
    return root



SHARD_RESOLUTIONS = (32, 64)


@pytest.fixture(scope="session")
def shard_root(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny shards of `synth_root` (`depthkit shard`, defaults but shard size 8) at 32 and
    64 px: 22 train samples in 3 shards + 2 val in 1, both backgrounds, manifest + indexes.
    Read-only: copy it before changing anything."""
    from depthkit.shard import ShardConfig, write_shards

    out = tmp_path_factory.mktemp("shards") / "shards"
    write_shards([synth_root], ShardConfig(out=out, resolutions=SHARD_RESOLUTIONS,
                                           shard_size=8, workers=0, progress=False))
    return out




@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint from the demo at toy size (3 rooms x 3 cut-outs, two training steps):
    a real, loadable model for the tools' end-to-end tests, not a good one."""
    from depthkit.demo import DemoConfig, run_demo

    cfg = DemoConfig(out=tmp_path_factory.mktemp("tiny") / "out", bgs=3, fgs=3, positions=1,
                     val_fraction=0.34, epochs=1, batch_size=4, max_steps=2, workers=1,
                     grid_samples=2)
    return run_demo(cfg, say=lambda line: None).checkpoint



class SmallDisk:
    """A pretend filesystem of `capacity` bytes under `root`, for disk-full tests.

    Files opened for writing by depthkit's writers (atomic files, tars, spill buckets, the
    zip writer) are buffered as usual, over a raw file whose writes fail with ENOSPC once
    the bytes of the files under `root` would pass `capacity` (what fits is written first,
    like a real disk; a later flush or close fails again). `shutil.disk_usage` reports what
    is left. `undo()` frees the disk (removes the patches).
    """

    MODULES = ("depthkit.core.atomic", "depthkit.shard.tario", "depthkit.shard.spill")

    def __init__(self, root: Path, capacity: int) -> None:
        import importlib
        import shutil
        import types
        import zipfile
        from collections import namedtuple

        self.root, self.capacity = Path(root), capacity
        self.patch = pytest.MonkeyPatch()
        for name in self.MODULES:
            self.patch.setattr(importlib.import_module(name), "open", self.open, raising=False)
        shim = types.SimpleNamespace(**{k: getattr(zipfile.io, k) for k in dir(zipfile.io)
                                        if not k.startswith("__")})
        shim.open = self.open
        self.patch.setattr(zipfile, "io", shim)
        usage = namedtuple("usage", "total used free")
        self.patch.setattr(shutil, "disk_usage",
                           lambda p: usage(capacity, self.used(), capacity - self.used()))

    def used(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def open(self, file, mode="r", *args, **kwargs):  # noqa: ANN001, ANN201 - as builtins.open
        import builtins
        import io

        if not any(c in mode for c in "wax+"):
            return builtins.open(file, mode, *args, **kwargs)
        raw = _LimitedFile(file, mode.replace("b", ""))
        raw.disk = self
        return io.BufferedRandom(raw) if "+" in mode else io.BufferedWriter(raw)

    def undo(self) -> None:
        self.patch.undo()


class _LimitedFile(io.FileIO):
    """A raw file whose writes stop at its SmallDisk's capacity."""

    disk: SmallDisk

    def write(self, data) -> int:  # noqa: ANN001
        import errno

        view = memoryview(data).cast("B")
        room = self.disk.capacity - self.disk.used()
        if len(view) > room:
            if room > 0:
                super().write(view[:room])
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(view)


@pytest.fixture
def small_disk():
    """`small_disk(root, capacity)`: a SmallDisk over `root` (undone after the test)."""
    disks: list[SmallDisk] = []

    def make(root: Path, capacity: int) -> SmallDisk:
        disks.append(SmallDisk(root, capacity))
        return disks[-1]

    yield make
    for disk in disks:
        disk.undo()
