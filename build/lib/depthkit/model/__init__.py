"""Two-head mask + depth networks (`create_model(name)`), their cost, and the checkpoint format."""

from depthkit.model.checkpoint import (
    build_model_from,
    load_checkpoint,
    load_model,
    save_checkpoint,
    unwrap,
)
from depthkit.model.cost import count_parameters, describe_models, forward_flops
from depthkit.model.registry import (
    DEFAULT_MODEL,
    MODEL_NAMES,
    create_model,
    model_kwargs,
    parse_model_options,
    resolve_name,
    to_outputs,
)

__all__ = ["DEFAULT_MODEL", "MODEL_NAMES", "build_model_from", "count_parameters",
           "create_model", "describe_models", "forward_flops", "load_checkpoint", "load_model",
           "model_kwargs", "parse_model_options", "resolve_name", "save_checkpoint",
           "to_outputs", "unwrap"]
