"""Without DALI (no wheel on macOS, Windows, ARM): eval reads the shards with webdataset and
gives the DALI loader's numbers; train says in one line that it needs DALI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# A meta-path finder that makes `import nvidia.dali` fail, then `python -m depthkit`.
HIDE_DALI = """
import runpy, sys
class NoDali:
    def find_spec(self, name, path=None, target=None):
        if name == "nvidia.dali" or name.startswith("nvidia.dali."):
            raise ImportError(f"No module named {name!r}")
sys.meta_path.insert(0, NoDali())
sys.argv[0] = "depthkit"
runpy.run_module("depthkit", run_name="__main__", alter_sys=True)
"""
RUN_DEPTHKIT = "import runpy, sys; sys.argv[0] = 'depthkit'; runpy.run_module('depthkit', " \
               "run_name='__main__', alter_sys=True)"
# Pillow and DALI's CPU decoder agree exactly on these shards (measured: identical metrics);
# the slack allows for nvJPEG rounding a level or two apart on a GPU.
TOLERANCE = 2e-3


def _depthkit(prelude: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-c", prelude, *args], capture_output=True,
                          text=True, timeout=120, env=env, cwd=Path(__file__).parent.parent)


def _eval(prelude: str, checkpoint: Path, shards: Path, out: Path) -> dict:
    done = _depthkit(prelude, "eval", "-c", str(checkpoint), "-s", str(shards), "--split",
                     "train", "--json", str(out), "--batch-size", "4", "--device", "cpu")
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(out.read_text())


def test_the_prelude_hides_dali() -> None:
    done = subprocess.run([sys.executable, "-c", HIDE_DALI.replace(
        "runpy.run_module", "import nvidia.dali  # ").replace('sys.argv[0] = "depthkit"', "")],
        capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "ImportError" in done.stderr


@pytest.mark.slow
def test_eval_without_dali_matches_the_dali_loader(tiny_checkpoint: Path, shard_root: Path,
                                                   tmp_path: Path) -> None:
    pytest.importorskip("nvidia.dali")
    plain = _eval(RUN_DEPTHKIT, tiny_checkpoint, shard_root, tmp_path / "dali.json")
    hidden = _eval(HIDE_DALI, tiny_checkpoint, shard_root, tmp_path / "wds.json")
    assert hidden["samples"] == plain["samples"] == 22
    numbers = [k for k, v in plain.items() if k.startswith(("mask_", "depth_"))
               and isinstance(v, float)]
    assert len(numbers) >= 10
    for key in numbers:
        assert hidden[key] == pytest.approx(plain[key], abs=TOLERANCE), key


def test_train_without_dali_says_it_needs_dali(shard_root: Path, tmp_path: Path) -> None:
    done = _depthkit(HIDE_DALI, "train", "--shards", str(shard_root), "--out",
                     str(tmp_path / "run"), "--res", "64", "--epochs", "1", "--device", "cpu")
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: depthkit train needs NVIDIA DALI")
    assert "Linux x86_64" in lines[0]


ROOT = Path(__file__).parent.parent
# Import name -> distribution, for the third-party modules depthkit imports.
DISTRIBUTIONS = {"PIL": "pillow", "nvidia": "nvidia-dali-cuda120", "numpy": "numpy",
                 "py7zr": "py7zr", "rich": "rich", "torch": "torch", "typer": "typer",
                 "webdataset": "webdataset"}


def _requirements() -> dict[str, object]:
    tomllib = pytest.importorskip("tomllib")
    requirements = pytest.importorskip("packaging.requirements")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [requirements.Requirement(r) for r in project["dependencies"]]
    return {r.name: r for r in reqs}


def _third_party_imports() -> set[str]:
    import ast

    names: set[str] = set()
    for path in (ROOT / "depthkit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n != "depthkit" and n not in sys.stdlib_module_names}


def test_every_import_is_declared() -> None:
    reqs = _requirements()
    imports = _third_party_imports()
    assert imports <= set(DISTRIBUTIONS), imports - set(DISTRIBUTIONS)
    assert {DISTRIBUTIONS[n] for n in imports} <= set(reqs)
    assert "tensorboard" in reqs  # torch.utils.tensorboard needs it


def test_dali_is_a_linux_x86_64_requirement() -> None:
    marker = _requirements()["nvidia-dali-cuda120"].marker
    assert marker is not None
    assert marker.evaluate({"sys_platform": "linux", "platform_machine": "x86_64"})
    for platform, machine in (("darwin", "arm64"), ("win32", "AMD64"), ("linux", "aarch64")):
        assert not marker.evaluate({"sys_platform": platform, "platform_machine": machine})


def test_mit_license_file() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 the depthkit authors" in text
