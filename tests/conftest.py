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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `@pytest.mark.gpu` tests where torch sees no CUDA device (they never ran there)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none here): not run")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


class SyncCounter:
    """Counts the torch ops that would make the host wait for a CUDA device, by name.

    Used as a context manager around steady-state work (a TorchDispatchMode sees every op):
    reading a value (`item`, `bool()`, `tolist`: `_local_scalar_dense`), ops whose output size
    depends on the data (`nonzero`, `masked_select`, boolean indexing), tensors built from
    host data (`torch.tensor(...)`: `lift_fresh`, later copied to the device) and copies from
    a device to the host (visible when the work runs on `device="meta"`)."""

    NAMES = ("_local_scalar_dense", "item", "is_nonzero", "equal", "nonzero", "masked_select",
             "_unique2", "unique_dim", "unique_consecutive", "lift_fresh", "lift_fresh_copy")

    def __init__(self) -> None:
        self.ops: list[str] = []

    def __enter__(self) -> SyncCounter:
        from torch.utils._python_dispatch import TorchDispatchMode

        counter = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
                name = counter.sync_name(func, args, kwargs or {})
                if name:
                    counter.ops.append(name)
                return func(*args, **(kwargs or {}))

        self._mode = _Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._mode.__exit__(*exc)

    def sync_name(self, func, args, kwargs) -> str | None:  # noqa: ANN001
        """The op's name if it is one that syncs, else None."""
        import torch

        name = func.overloadpacket.__name__
        if name in self.NAMES:
            return name
        if name in ("index", "index_put", "index_put_"):
            idx = args[1] if len(args) > 1 else ()
            if any(isinstance(t, torch.Tensor) and t.dtype == torch.bool for t in idx or ()):
                return f"{name}(bool mask)"
        if name in ("_to_copy", "copy_"):
            src = args[1] if name == "copy_" else args[0]
            dst = args[0].device if name == "copy_" else kwargs.get("device")
            if isinstance(src, torch.Tensor) and src.device.type != "cpu" and dst is not None \
                    and torch.device(dst).type == "cpu":
                return f"{name}(to host)"
        return None


@pytest.fixture
def count_syncs() -> type[SyncCounter]:
    """`with count_syncs() as c: ...` then `c.ops`: the host-syncing ops that ran."""
    return SyncCounter


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
