"""Measuring a model: metrics, `depthkit eval` on shards, `depthkit predict` on image pairs.

The configs are torch-free; the rest load on first use, so the CLI can read `EvalConfig` and
`PredictConfig` to build its commands without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from depthkit.core.lazy import lazy_exports
from depthkit.eval.config import EvalConfig, PredictConfig

if TYPE_CHECKING:
    from depthkit.eval.evaluate import (
        EvalResult,
        evaluate,
        format_table,
        prepare,
        run_eval,
        write_grid,
        write_json,
    )
    from depthkit.eval.metrics import MetricAccumulator, ssim_per_image
    from depthkit.eval.pictures import GRID_TITLES
    from depthkit.eval.predict import (
        PREDICT_IMAGE_EXTS,
        check_res,
        predict_arrays,
        prepare_predict,
        run_predict,
    )

_LAZY = {
    **dict.fromkeys(("EvalResult", "evaluate", "format_table", "prepare", "run_eval",
                     "write_grid", "write_json"), "depthkit.eval.evaluate"),
    **dict.fromkeys(("MetricAccumulator", "ssim_per_image"), "depthkit.eval.metrics"),
    "GRID_TITLES": "depthkit.eval.pictures",
    **dict.fromkeys(("PREDICT_IMAGE_EXTS", "check_res", "predict_arrays", "prepare_predict",
                     "run_predict"), "depthkit.eval.predict"),
}

__all__ = ["EvalConfig", "EvalResult", "GRID_TITLES", "MetricAccumulator", "PREDICT_IMAGE_EXTS",
           "PredictConfig", "check_res", "evaluate", "format_table", "predict_arrays", "prepare",
           "prepare_predict", "run_eval", "run_predict", "ssim_per_image", "write_grid",
           "write_json"]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
