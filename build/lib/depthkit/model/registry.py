"""The model registry: names -> constructors, `create_model(name)`, options and output mapping.

- `unetexp`: the original course model (shared 3->32 stem, dense full-resolution mask branch,
  UNet depth branch), rebuilt from its description; ~3.8M parameters, ~22 GFLOPs per 64 px sample.
- `diffunet` (the default): a small UNet that sees bg, fgbg and their explicit difference
  |fgbg - bg| and works at half resolution; a fraction of the FLOPs (see `describe_models`).
Every model maps (bg, fgbg) -> {"mask": logits, "depth": raw}.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from depthkit.core.errors import DepthkitError
from depthkit.model.blocks import Outputs
from depthkit.model.diffunet import DiffUNet
from depthkit.model.unetexp import UnetExp

# name -> (constructor, default kwargs). "default" is an alias resolved by `resolve_name`.
_REGISTRY: dict[str, tuple[Callable[..., nn.Module], dict[str, Any]]] = {
    "diffunet": (DiffUNet, {}),
    "diffunet-full": (DiffUNet, {"reduce": 1, "widths": (16, 32, 64, 128)}),
    "diffunet-nodiff": (DiffUNet, {"diff": False}),
    "unetexp": (UnetExp, {}),
}
DEFAULT_MODEL = "diffunet"
MODEL_NAMES: tuple[str, ...] = ("default", *_REGISTRY)
REGISTERED: tuple[str, ...] = tuple(_REGISTRY)  # the concrete names, without the alias


def resolve_name(name: str) -> str:
    """Concrete registry name for `name` ("default" -> the default model)."""
    name = DEFAULT_MODEL if name == "default" else name
    if name not in _REGISTRY:
        raise DepthkitError(f"unknown model '{name}' (choose from: {', '.join(MODEL_NAMES)})")
    return name


def model_kwargs(name: str, **kwargs: Any) -> dict[str, Any]:
    """The full constructor kwargs of a model (defaults merged), as stored in checkpoints."""
    merged = {**_REGISTRY[resolve_name(name)][1], **kwargs}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in merged.items()}


def parse_model_options(items: Sequence[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings (VALUE a Python literal: 16, 2, "(16,32,48,64)") -> kwargs."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise DepthkitError(f"--model-option '{item}': expected KEY=VALUE, e.g. stem=16")
        try:
            options[key.strip()] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            raise DepthkitError(f"--model-option '{item}': VALUE must be a number, a tuple "
                                "or a quoted string") from None
    return options


def create_model(name: str = "default", **kwargs: Any) -> nn.Module:
    """Build a model by name (see MODEL_NAMES); forward(bg, fgbg) -> {"mask", "depth"}."""
    ctor, _ = _REGISTRY[resolve_name(name)]
    try:
        return ctor(**model_kwargs(name, **kwargs))
    except TypeError as err:
        raise DepthkitError(f"model '{name}': bad options {kwargs}: {err}") from None


def to_outputs(out: Outputs) -> Outputs:
    """Network outputs -> {"mask": probability in [0, 1], "depth": clamped to [0, 1]}."""
    return {"mask": torch.sigmoid(out["mask"].float()), "depth": out["depth"].float().clamp(0, 1)}
