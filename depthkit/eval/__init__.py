"""Measuring a model: metrics, `depthkit eval` on shards, `depthkit predict` on image pairs."""

from depthkit.eval.evaluate import (
    EvalConfig,
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
    PredictConfig,
    check_res,
    predict_arrays,
    prepare_predict,
    run_predict,
)

__all__ = ["GRID_TITLES", "PREDICT_IMAGE_EXTS", "EvalConfig", "EvalResult", "MetricAccumulator",
           "PredictConfig", "check_res", "evaluate", "format_table", "predict_arrays", "prepare",
           "prepare_predict", "run_eval", "run_predict", "ssim_per_image", "write_grid",
           "write_json"]
