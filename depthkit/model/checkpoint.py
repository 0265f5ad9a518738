"""Checkpoints: atomic save, `weights_only=True` load, model rebuild, RNG state capture.

A checkpoint is a plain dict of tensors and Python primitives (so `weights_only=True` can read
it)::

    {"format": "depthkit-checkpoint", "version": 1,
     "model": state_dict, "optimizer": ..., "scheduler": ..., "scaler": ...,   # last 3 optional
     "meta": {"model_name", "model_kwargs", "res", "norm", "epoch", "step", "batch_in_epoch",
              "loss": {...}, "config": {...}, "val": {...}},
     "rng": {"torch": ByteTensor, "cuda": [ByteTensor...], "numpy": {...}, "python": [...]}}
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from depthkit.core.atomic import atomic_file
from depthkit.core.diskspace import DiskFullError
from depthkit.core.errors import DepthkitError
from depthkit.model.registry import create_model

FORMAT = "depthkit-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically (temp file in the same folder, fsync, os.replace)."""
    path = Path(path)
    state = {"format": FORMAT, "version": VERSION, **state}
    try:
        with atomic_file(path, parents=True) as f:
            torch.save(state, f)
    except DiskFullError as err:  # the temp file is gone; say what the checkpoint takes
        err.needs = err.needs or tensor_bytes(state)
        raise


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in a nested dict/list (about what torch.save writes)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True`; a one-line DepthkitError if it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise DepthkitError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile,
            pickle.UnpicklingError) as err:
        if isinstance(err, pickle.UnpicklingError):
            # torch's own text here advises weights_only=False, which we never do
            reason = "not a torch file, or it holds objects a weights_only load refuses"
        else:
            text = str(err).strip()
            reason = text.splitlines()[0].split(". ")[0][:160] if text else type(err).__name__
        raise DepthkitError(f"corrupt or unreadable checkpoint {path}: {reason}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise DepthkitError(f"{path} is not a depthkit checkpoint")
    if state.get("version") != VERSION:
        raise DepthkitError(
            f"{path}: checkpoint version {state.get('version')} (this depthkit reads {VERSION})"
        )
    if "model" not in state or "meta" not in state:
        raise DepthkitError(f"{path}: checkpoint lacks model weights or meta")
    return state


def build_model_from(state: dict[str, Any], path: str | Path = "checkpoint") -> nn.Module:
    """The checkpoint's model with its weights loaded; DepthkitError if they do not fit."""
    meta = state["meta"]
    model = create_model(meta["model_name"], **meta.get("model_kwargs", {}))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        name = meta["model_name"]
        raise DepthkitError(f"{path}: weights do not fit model '{name}': {first}") from None
    return model


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Model (eval mode, on `device`) and its meta (model_name, model_kwargs, res, norm, ...)."""
    state = load_checkpoint(path, map_location="cpu")
    model = build_model_from(state, path).to(device).eval()
    return model, dict(state["meta"])


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and torch.compile wrappers, in either order and any depth
    (whose state_dict is saved): compile's `_orig_mod`, DDP's `module`, peeled until none."""
    while True:
        inner = getattr(model, "_orig_mod", None)  # torch.compile's OptimizedModule
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "module", None)  # DistributedDataParallel / DataParallel
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def capture_rng() -> dict[str, Any]:
    """All RNG states in a weights_only-loadable form (tensors, lists, ints, floats)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": [version, list(internal), gauss_next],
    }


def restore_rng(rng: dict[str, Any]) -> None:
    """Inverse of capture_rng (CUDA states only where the device count matches)."""
    torch.set_rng_state(rng["torch"])
    cuda = rng.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    n = rng["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    version, internal, gauss_next = rng["python"]
    random.setstate((version, tuple(internal), gauss_next))
