"""Models: forward/backward for every registered name, output contract, size and cost."""

from __future__ import annotations

import pytest
import torch

from depthkit.core.errors import DepthkitError
from depthkit.model import (
    MODEL_NAMES,
    count_parameters,
    create_model,
    forward_flops,
    model_kwargs,
    to_outputs,
)
from depthkit.model.registry import REGISTERED

ORIGINAL_PARAMS = 3_786_872  # the original course model's parameter count
ORIGINAL_GFLOPS_64 = 21.7  # the original course model's forward GFLOPs per 64 px sample


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_backward_finite_grads(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name)
    bg, fgbg = torch.randn(2, 3, 32, 48), torch.randn(2, 3, 32, 48)
    out = model(bg, fgbg)
    assert set(out) == {"mask", "depth"}
    assert out["mask"].shape == out["depth"].shape == (2, 1, 32, 48)
    (out["mask"].mean() + out["depth"].mean()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"


def test_to_outputs_ranges() -> None:
    out = to_outputs({"mask": torch.tensor([-50.0, 0.0, 50.0]).view(1, 1, 1, 3),
                      "depth": torch.tensor([-0.5, 0.3, 1.7]).view(1, 1, 1, 3)})
    assert torch.allclose(out["mask"].flatten(), torch.tensor([0.0, 0.5, 1.0]), atol=1e-6)
    assert out["depth"].flatten().tolist() == pytest.approx([0.0, 0.3, 1.0])


def test_unetexp_matches_original_size_and_cost() -> None:
    model = create_model("unetexp")
    assert count_parameters(model) == pytest.approx(ORIGINAL_PARAMS, rel=0.01)
    assert forward_flops(model, 64) / 1e9 == pytest.approx(ORIGINAL_GFLOPS_64, rel=0.02)


def real_forward_flops(model: torch.nn.Module, res: int) -> int:
    """FLOPs of one real forward of a (1, 3, res, res) pair on the model's own device."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, res, res)
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, x)
    return counter.get_total_flops()


@pytest.mark.parametrize("name", REGISTERED)
def test_flops_counted_on_meta_equal_a_real_forward(name: str) -> None:
    model = create_model(name).train()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    devices = []
    model.register_forward_pre_hook(lambda m, args: devices.append(args[0].device.type))
    counted = forward_flops(model, 64)
    assert devices == ["meta"]  # shapes only: no real forward ran
    assert model.training  # the mode it came in
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert counted == real_forward_flops(model, 64)
    assert forward_flops(model, 64, batch=3) == counted  # per sample


def test_default_model_is_a_small_fraction_of_the_original_cost() -> None:
    default = forward_flops(create_model("default"), 64)
    original = forward_flops(create_model("unetexp"), 64)
    assert default < original / 20


def test_default_model_uses_the_background() -> None:
    """The difference input makes the output depend on bg, not only on fgbg."""
    torch.manual_seed(0)
    model = create_model("default").eval()
    fgbg = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a = model(fgbg, fgbg)["mask"]
        b = model(torch.randn(1, 3, 32, 32), fgbg)["mask"]
    assert not torch.allclose(a, b)


def test_unknown_model_and_bad_option_are_user_errors() -> None:
    with pytest.raises(DepthkitError, match="unknown model 'nope'"):
        create_model("nope")
    with pytest.raises(DepthkitError, match="bad options"):
        create_model("diffunet", colour=3)


def test_model_kwargs_are_checkpoint_friendly() -> None:
    kw = model_kwargs("diffunet")
    assert all(isinstance(v, (int, float, bool, list)) for v in kw.values())
    assert count_parameters(create_model("diffunet", **kw)) == count_parameters(
        create_model("default")
    )


def test_refine_adds_full_resolution_convs() -> None:
    base = create_model("diffunet", stem=8, widths=(8, 16, 24, 32))
    refined = create_model("diffunet", stem=8, widths=(8, 16, 24, 32), refine=2)
    conv_bn = 8 * 8 * 9 + 2 * 8  # 3x3 conv without bias + BatchNorm weight and bias
    assert count_parameters(refined) - count_parameters(base) == 2 * conv_bn
    # Each extra conv runs at full resolution: 2 FLOPs per multiply-add at every pixel.
    extra = forward_flops(refined, 32) - forward_flops(base, 32)
    assert extra == pytest.approx(2 * 2 * 8 * 8 * 9 * 32 * 32, rel=0.01)
    out = refined(torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32))
    assert out["mask"].shape == (1, 1, 32, 32)


def test_head_refine_gives_each_head_its_own_convs() -> None:
    base = create_model("diffunet", stem=8, widths=(8, 16, 24, 32))
    split = create_model("diffunet", stem=8, widths=(8, 16, 24, 32), head_refine=1)
    conv_bn = 8 * 8 * 9 + 2 * 8
    assert count_parameters(split) - count_parameters(base) == 2 * conv_bn  # one per head
    # The two heads' convs are separate modules: training the mask does not move depth's.
    mask_conv = split.mask_head[0][0].weight
    depth_conv = split.depth_head[0][0].weight
    assert mask_conv.data_ptr() != depth_conv.data_ptr()
    out = split(torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32))
    out["mask"].sum().backward()
    assert mask_conv.grad is not None and mask_conv.grad.abs().sum() > 0
    assert depth_conv.grad is None


def test_models_without_head_refine_keep_their_checkpoint_keys() -> None:
    keys = create_model("diffunet", stem=8, widths=(8, 16, 24, 32)).state_dict().keys()
    assert {"mask_head.weight", "depth_head.weight"} <= set(keys)
