"""diffunet's `context` option: one vector of the whole bottleneck added back at every pixel."""

from __future__ import annotations

import torch

from depthkit.model import create_model, model_kwargs
from depthkit.model.diffunet import global_context

SLIM = {"widths": (8, 16, 16, 16), "stem": 8}


def test_context_is_one_vector_of_the_whole_map() -> None:
    ctx = global_context(4)
    x = torch.randn(2, 4, 6, 6)
    shuffled = x.flatten(2)[..., torch.randperm(36)].view_as(x)
    out = ctx(x)
    assert out.shape == (2, 4, 1, 1)
    assert torch.allclose(out, ctx(shuffled), atol=1e-6)  # where a feature is does not matter


def test_context_model_runs_and_costs_a_little_more() -> None:
    from depthkit.model import count_parameters

    plain, ctx = create_model("diffunet", **SLIM), create_model("diffunet", context=True, **SLIM)
    assert count_parameters(ctx) == count_parameters(plain) + 2 * (16 * 16 + 16)
    assert model_kwargs("diffunet", context=True)["context"] is True  # stored in checkpoints
    out = ctx(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))
    assert out["depth"].shape == out["mask"].shape == (2, 1, 32, 32)
