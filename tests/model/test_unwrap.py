"""`unwrap` finds the plain model under torch.compile and DDP in either order."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from depthkit.model import create_model, unwrap


class FakeDDP(nn.Module):
    """What `unwrap` relies on in DistributedDataParallel: the wrapped model as `.module`."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def tiny() -> nn.Module:
    return create_model("diffunet", stem=8, widths=(8, 16, 24, 32))


@pytest.mark.parametrize("wrap", [
    lambda m: m,
    torch.compile,
    FakeDDP,
    lambda m: torch.compile(FakeDDP(m)),  # compile(DDP(m))
    lambda m: FakeDDP(torch.compile(m)),  # DDP(compile(m))
    lambda m: FakeDDP(torch.compile(FakeDDP(m))),
], ids=["plain", "compile", "ddp", "compile(ddp)", "ddp(compile)", "ddp(compile(ddp))"])
def test_unwrap_peels_every_wrapper(wrap) -> None:  # noqa: ANN001
    model = tiny()
    wrapped = wrap(model)
    assert unwrap(wrapped) is model
    assert list(unwrap(wrapped).state_dict()) == list(model.state_dict())  # no prefixes


def test_a_real_compile_wrapper_prefixes_its_keys() -> None:
    """Why unwrapping matters: a compiled model's state_dict keys carry `_orig_mod.`."""
    model = tiny()
    compiled = FakeDDP(torch.compile(model))
    assert all(k.startswith("module._orig_mod.") for k in compiled.state_dict())
    assert type(compiled.module).__name__ == "OptimizedModule"


def test_unwrap_real_ddp_in_both_orders() -> None:
    """A real one-process gloo DistributedDataParallel, compiled outside and inside."""
    import socket

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        model = tiny()
        assert unwrap(torch.compile(DDP(model))) is model
        assert unwrap(DDP(torch.compile(model))) is model
    finally:
        dist.destroy_process_group()
