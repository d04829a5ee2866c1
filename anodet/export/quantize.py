"""INT8 for CPUs: ONNX Runtime static quantization (QDQ, per-channel) calibrated on normals.

Only convolutions are quantized (named modules can be kept FP32): input normalisation, the
squared error, the blur and the threshold stay FP32 (they are cheap and the score's precision
matters there). The command measures what it did on the given data, speed-up and image AUROC
change, and refuses a model that lost more accuracy than allowed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from anodet.artifact import INPUT_DEPTH, INPUT_RGB, METADATA_KEY, OUTPUTS, info_from_metadata
from anodet.data.arrays import load_arrays
from anodet.data.samples import discover
from anodet.errors import AnodetError

log = logging.getLogger(__name__)


@dataclass
class QuantizeResult:
    path: Path | None  # None when refused
    fp32_ms: float
    int8_ms: float
    fp32_auroc: float | None
    int8_auroc: float | None
    calib_images: int

    @property
    def speedup(self) -> float:
        return self.fp32_ms / self.int8_ms if self.int8_ms > 0 else float("nan")

    @property
    def auroc_drop(self) -> float | None:
        if self.fp32_auroc is None or self.int8_auroc is None:
            return None
        return self.fp32_auroc - self.int8_auroc


class _Reader:
    """CalibrationDataReader over preprocessed normal frames, one frame per call."""

    def __init__(self, rgb: np.ndarray, depth: np.ndarray | None, batch: int | None):
        self.rgb, self.depth, self.i = rgb, depth, 0
        self.step = batch or 1

    def get_next(self):
        if self.i >= self.rgb.shape[0]:
            return None
        sl = slice(self.i, self.i + self.step)
        self.i += self.step
        if self.rgb[sl].shape[0] < self.step:
            return None
        feed = {INPUT_RGB: self.rgb[sl]}
        if self.depth is not None:
            feed[INPUT_DEPTH] = self.depth[sl]
        return feed

    def rewind(self) -> None:
        self.i = 0


MODULES = ("stem", "backbone", "aligner", "autoencoder")  # "stem": the first conv only


def _quantizable_convs(model: onnx.ModelProto, keep_fp32: tuple[str, ...]) -> list[str]:
    """Conv nodes to quantize: not the blur (one output channel), not in a ``keep_fp32`` module.

    Node names come from the exporter's module scopes (``/det/backbone/...``).
    """
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2:
            continue
        w = shapes.get(node.input[1])
        if (w is None or w[0] > 1) and not any(f"/{m}/" in node.name for m in keep_fp32):
            names.append(node.name)
    return names


def time_model(path: Path, rgb: np.ndarray, depth: np.ndarray | None, runs: int = 10, threads: int | None = None) -> float:
    """Median ms per batch-1 inference in ONNX Runtime CPU (one warm-up run first)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {INPUT_RGB: rgb[:1]}
    if depth is not None:
        feed[INPUT_DEPTH] = depth[:1]
    sess.run(list(OUTPUTS), feed)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(list(OUTPUTS), feed)
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def _auroc(model: Path, data: Path) -> float | None:
    """Image AUROC of ``model`` on the test split of ``data`` (None without a usable test split)."""
    from anodet.evaluation.evaluator import evaluate_model, open_model

    ds = discover(data, need_depth=False)
    if not ds.test or len({s.label for s in ds.test}) < 2:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        res = evaluate_model(open_model(model=model, backend="onnx-cpu"), data, tmp, report=False)
    return res["image_auroc"]


def quantize_int8(
    model: str | Path,
    calib: str | Path,
    output: str | Path,
    *,
    max_images: int = 64,
    max_auroc_drop: float = 0.01,
    accept: bool = False,
    force: bool = False,
    method: str = "entropy",
    keep_fp32: tuple[str, ...] = (),
) -> QuantizeResult:
    """Quantize ``model`` to INT8 with normal images from ``calib``; write ``output``.

    ``keep_fp32`` names modules left in FP32 ("stem" is the first convolution, whose input
    mixes RGB and the depth channel). Measured on the synthetic benchmark (rgbd_full, 256 px,
    random-init backbone), image AUROC change: checkpoint A (60 epochs) MinMax -0.077, with the
    autoencoder FP32 -0.080, Percentile -0.033, Entropy +0.037 (75 frames); checkpoint B (200
    epochs) MinMax -0.113, Entropy -0.114, stem FP32 -0.107. Keeping modules FP32 did not help
    and costs speed, so by default everything is quantized with Entropy calibration. Even
    quantizing only the stem and layer1 of checkpoint B lost 0.067: INT8 rounding early in a
    random-init backbone survives to the features, and the aligner's whitening amplifies it
    in the low-variance directions as much as the signal the autoencoder models there.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model, output = Path(model), Path(output)
    if output.exists() and not force:
        raise AnodetError(f"output {output} exists; pass --force to overwrite")
    src = onnx.load(str(model))
    meta = {p.key: p.value for p in src.metadata_props}
    info = info_from_metadata(meta, str(model))
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise AnodetError(f"unknown calibration method {method!r}; valid: {', '.join(methods)}")
    unknown = sorted(set(keep_fp32) - set(MODULES))
    if unknown:
        raise AnodetError(f"unknown module(s) {', '.join(unknown)} to keep in FP32; valid: {', '.join(MODULES)}")
    ds = discover(calib, need_depth=info.needs_depth)
    normals = (ds.train + ds.val)[:max_images]
    if not normals:
        raise AnodetError(f"--calib {calib}: no normal images to calibrate on")
    rgb, depth = load_arrays(normals, info.preprocess, need_depth=info.needs_depth, desc="calibration")
    with tempfile.TemporaryDirectory(dir=output.parent) as tmp:
        pre, q = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(model), str(pre), skip_symbolic_shape=True)
        convs = _quantizable_convs(onnx.load(str(pre)), tuple(keep_fp32))
        if not convs:
            raise AnodetError(f"{model}: no convolution left to quantize (keep_fp32={list(keep_fp32)})")
        log.info("quantizing %d convolutions with %d calibration frames", len(convs), len(normals))
        root = logging.getLogger()
        level = root.level
        root.setLevel(max(level, logging.WARNING))  # ORT logs one INFO line per copied bias
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # calibrators print() their progress
                quantize_static(
                    str(pre), str(q), _Reader(rgb, depth, info.batch), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["Conv"], nodes_to_quantize=convs,
                    calibrate_method=methods[method],
                )
        finally:
            root.setLevel(level)
        qm = onnx.load(str(q))
        import json

        raw = json.loads(meta[METADATA_KEY])
        raw["precision"] = "int8"
        meta[METADATA_KEY] = json.dumps(raw, sort_keys=True)
        del qm.metadata_props[:]
        for k, v in meta.items():
            qm.metadata_props.add(key=k, value=v)
        onnx.save(qm, str(q))
        result = QuantizeResult(None, time_model(model, rgb, depth), time_model(q, rgb, depth),
                                _auroc(model, Path(calib)), _auroc(q, Path(calib)), len(normals))
        drop = result.auroc_drop
        if drop is not None and drop > max_auroc_drop and not accept:
            log.error("image AUROC dropped by %.4f (> %.4f): INT8 model not written", drop, max_auroc_drop)
            return result
        if drop is None:
            log.warning("%s has no test split with both classes: accuracy change not measured", calib)
        fd, tmp_out = tempfile.mkstemp(prefix=output.name + ".", suffix=".tmp", dir=output.parent)
        os.close(fd)
        os.replace(q, tmp_out)
        os.replace(tmp_out, output)
        result.path = output
    return result
