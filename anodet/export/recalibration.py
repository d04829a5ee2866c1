"""Recalibrate an exported model's threshold on its own outputs (used after INT8 quantization).

INT8 rounding makes the backbone a slightly different feature extractor: every normal image
gets a little more reconstruction error, so the FP32 model's threshold sits inside the INT8
model's normal scores and good parts get flagged. The quantized graph's threshold and scale are
therefore refitted exactly as training fits them (:func:`anodet.calibration.threshold` on the
held-out normals). Only two scalar initializers change; the ranking (AUROC) does not. The
per-position error statistics are left as trained.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from anodet.artifact import ModelInfo
from anodet.calibration import pixel_threshold, threshold
from anodet.data.arrays import load_arrays
from anodet.errors import AnodetError
from anodet.export.session import run_frames

RAW_THRESHOLD, SCORE_SCALE = "det.scorer.raw_threshold", "det.scorer.score_scale"
PIXEL_THRESHOLD = "det.scorer.pixel_raw_threshold"
RECALIBRATION_IMAGES = 256  # held-out normals for the threshold: enough for a stable quantile


@dataclass
class Recalibration:
    raw_threshold: float
    score_scale: float
    images: int  # held-out normal frames the threshold came from
    pixel_raw_threshold: float | None = None  # refitted mask threshold (None: not refitted)


def _consumer_input(model: onnx.ModelProto, initializer: str) -> str:
    """The tensor an initializer is applied to: input 0 of the node that takes it as input 1."""
    for node in model.graph.node:
        if len(node.input) > 1 and node.input[1] == initializer:
            return node.input[0]
    raise AnodetError(f"model has no scorer tensor '{initializer}'; re-export it with this anodet version")


def _set(model: onnx.ModelProto, name: str, value: float) -> None:
    for init in model.graph.initializer:
        if init.name == name:
            shape = numpy_helper.to_array(init).shape
            init.CopyFrom(numpy_helper.from_array(np.full(shape, value, np.float32), name))
            return
    raise AnodetError(f"model has no scorer initializer '{name}'; re-export it with this anodet version")


def recalibrate(
    model: onnx.ModelProto,
    rgb: np.ndarray,
    depth: np.ndarray | None,
    *,
    method: str,
    quantile: float,
    pixel_fpr: float | None = None,
) -> Recalibration:
    """Refit ``model``'s threshold and scale in place from held-out normal frames.

    rgb N x S x S x 3 uint8, depth N x S x S metres (None for RGB models); ``method`` and
    ``quantile`` as in the training config (``train.threshold_method/threshold_quantile``);
    ``pixel_fpr`` (``train.pixel_fpr``) refits the mask's threshold too.
    """
    if rgb.shape[0] == 0:
        raise AnodetError("recalibration needs normal frames")
    tensor = _consumer_input(model, RAW_THRESHOLD)
    raw = run_frames(model, rgb, depth, outputs=(tensor,))[tensor]
    thr, scale = threshold(raw, method, quantile)
    _set(model, RAW_THRESHOLD, thr)
    _set(model, SCORE_SCALE, scale)
    pixel = None
    if pixel_fpr is not None:
        pixel = pixel_threshold(raw, pixel_fpr)
        _set(model, PIXEL_THRESHOLD, pixel)
    return Recalibration(thr, scale, int(raw.shape[0]), pixel)


def refit_int8(model: onnx.ModelProto, info: ModelInfo, normals: Sequence[Any], *,
               quantizer: str) -> tuple[ModelInfo, Recalibration]:
    """Refit a quantized ``model``'s thresholds in place on held-out normal samples, as the FP32
    model's were fitted (``info.calibration``); return its INT8 ModelInfo and what was refitted."""
    cal = info.calibration
    # The held-out normals exactly as training calibrated on them: with the re-rounded depth
    # copies of train.depth_augment_units (same seed as training's validation copies).
    rgb, depth = load_arrays(normals[:RECALIBRATION_IMAGES], info.preprocess, need_depth=info.needs_depth,
                             desc="held-out normals", depth_units=cal.depth_augment_units, seed=cal.seed + 1)
    recal = recalibrate(model, rgb, depth, method=cal.threshold_method, quantile=cal.threshold_quantile,
                        pixel_fpr=cal.pixel_fpr)
    extra = {**info.extra, "int8_recalibration": {
        "raw_threshold": recal.raw_threshold, "score_scale": recal.score_scale, "images": recal.images,
        "pixel_raw_threshold": recal.pixel_raw_threshold, "fp32_raw_threshold": info.raw_threshold,
        "quantizer": quantizer}}
    pixel = info.pixel_raw_threshold if recal.pixel_raw_threshold is None else recal.pixel_raw_threshold
    return dataclasses.replace(info, precision="int8", raw_threshold=recal.raw_threshold,
                               score_scale=recal.score_scale, pixel_raw_threshold=pixel, extra=extra), recal


def calibration_frames(info: ModelInfo, calib: Any, max_images: int) -> tuple[Any, np.ndarray, np.ndarray | None]:
    """The dataset ``calib`` split as at training (info.calibration) and up to ``max_images`` of
    its normal images as model input: (dataset, rgb N x S x S x 3 uint8, depth N x S x S metres)."""
    from anodet.data.samples import discover

    cal = info.calibration
    # The training run's split, so the threshold comes from the same held-out normals as in
    # training when --calib is the training data.
    ds = discover(calib, need_depth=info.needs_depth, val_fraction=cal.val_fraction, seed=cal.seed)
    normals = (ds.train + ds.val)[:max_images]
    if not normals:
        raise AnodetError(f"--calib {calib}: no normal images to calibrate on")
    rgb, depth = load_arrays(normals, info.preprocess, need_depth=info.needs_depth, desc="calibration")
    return ds, rgb, depth
