"""INT8 for CPUs: ONNX Runtime static quantization (QDQ, per-channel) calibrated on normals.

Only convolutions are quantized (named modules can be kept FP32): input normalisation, the
squared error, the blur and the threshold stay FP32 (they are cheap and the score's precision
matters there). The quantized model's threshold is then refitted on its own scores for the
held-out normal frames (:mod:`anodet.export.recalibration`). The command
measures what it did on the given data, speed-up and image AUROC change, and refuses a model
that lost more accuracy than allowed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from anodet.artifact import (
    DECISION_THRESHOLD,
    INPUT_DEPTH,
    INPUT_RGB,
    OUTPUT_SCORE,
    OUTPUTS,
    ModelInfo,
    read_info,
    write_metadata,
)
from anodet.bench.timing import measure
from anodet.data.arrays import load_arrays
from anodet.data.samples import discover
from anodet.errors import AnodetError
from anodet.export.recalibration import Recalibration, calibration_frames, refit_int8
from anodet.export.session import run_frames
from anodet.outputs import publish, remove_orphans

log = logging.getLogger(__name__)


@dataclass
class QuantizeResult:
    path: Path | None  # None when refused
    fp32_ms: float
    int8_ms: float
    fp32_auroc: float | None
    int8_auroc: float | None
    calib_images: int
    fp32_false_alarms: float | None = None  # share of good test images flagged
    int8_false_alarms: float | None = None
    recalibration: Recalibration | None = None
    auroc_drop_sd: float | None = None  # paired bootstrap sd of the drop over the test images
    test_images: int = 0

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


BOOTSTRAP = 300  # resamples for the spread of the measured AUROC drop
# Module name -> exporter scope of its nodes (stages.{i-1} is layer{i} in every preset).
SCOPES = {"stem": "/backbone/stem/", "layer1": "/backbone/stages.0/", "layer2": "/backbone/stages.1/",
          "layer3": "/backbone/stages.2/", "layer4": "/backbone/stages.3/", "backbone": "/backbone/",
          "aligner": "/aligner/", "autoencoder": "/autoencoder/"}
MODULES = tuple(SCOPES)
DEFAULT_KEEP_FP32 = ("stem",)
DEFAULT_METHOD = "percentile"


def quantizable_convs(model: onnx.ModelProto, keep_fp32: tuple[str, ...]) -> list[str]:
    """Conv nodes to quantize: not the blur (one output channel), not in a ``keep_fp32`` module.

    Node names come from the exporter's module scopes (``/backbone/stages.0/...``).
    """
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    scopes = [SCOPES[m] for m in keep_fp32]
    names = []
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2:
            continue
        w = shapes.get(node.input[1])
        if (w is None or w[0] > 1) and not any(scope in node.name for scope in scopes):
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
    return float(np.median(measure(lambda: sess.run(list(OUTPUTS), feed), warmup=1, runs=runs)))


def paired_drop_sd(labels: np.ndarray, a: np.ndarray, b: np.ndarray) -> float | None:
    """Paired bootstrap sd of AUROC(a) - AUROC(b): test images resampled with replacement, both
    score arrays (N,) resampled alike; None when no resample holds both classes."""
    from sklearn.metrics import roc_auc_score

    rng, drops = np.random.default_rng(0), []
    for _ in range(BOOTSTRAP):
        idx = rng.integers(0, len(labels), len(labels))
        if len(set(labels[idx].tolist())) == 2:
            drops.append(roc_auc_score(labels[idx], a[idx]) - roc_auc_score(labels[idx], b[idx]))
    return float(np.std(drops)) if drops else None


def compare_on_test(fp32: Path, int8: Path, data: Path, info: ModelInfo) -> dict[str, float | None] | None:
    """Image AUROC, its paired bootstrap spread and false alarms of both models on the test split.

    None without a test split holding both normal and defective images. The bootstrap
    resamples test images (with replacement) and recomputes both AUROCs on each resample, so
    ``drop_sd`` says how far the measured drop could move on another test set of this size.
    """
    from sklearn.metrics import roc_auc_score

    ds = discover(data, need_depth=info.needs_depth)
    labels = np.array([s.label for s in ds.test])
    if len(set(labels.tolist())) < 2:
        return None
    rgb, depth = load_arrays(ds.test, info.preprocess, need_depth=info.needs_depth, desc="test images")
    a = run_frames(fp32, rgb, depth, outputs=(OUTPUT_SCORE,))[OUTPUT_SCORE]
    b = run_frames(int8, rgb, depth, outputs=(OUTPUT_SCORE,))[OUTPUT_SCORE]
    good = labels == 0
    return {"fp32_auroc": float(roc_auc_score(labels, a)), "int8_auroc": float(roc_auc_score(labels, b)),
            "drop_sd": paired_drop_sd(labels, a, b), "fp32_false_alarms": float(np.mean(a[good] > DECISION_THRESHOLD)),
            "int8_false_alarms": float(np.mean(b[good] > DECISION_THRESHOLD)), "test_images": len(labels)}


def quantize_int8(
    model: str | Path,
    calib: str | Path,
    output: str | Path,
    *,
    max_images: int = 64,
    max_auroc_drop: float = 0.01,
    accept: bool = False,
    force: bool = False,
    method: str = DEFAULT_METHOD,
    keep_fp32: tuple[str, ...] = DEFAULT_KEEP_FP32,
    recalibrate_threshold: bool = True,
) -> QuantizeResult:
    """Quantize ``model`` to INT8 with normal images from ``calib``; write ``output``.

    ``keep_fp32`` names modules left in FP32 (see ``MODULES``; "stem" is the first
    convolution, whose input mixes RGB and the depth channel, so 8-bit input steps are coarse
    for small depth changes). Early layers are the most sensitive: their rounding passes through
    the whole backbone and the aligner's whitening amplifies it. ORT's Entropy calibration,
    called through ``quantize_static``, uses 128 histogram bins for 128 quantized bins, so it
    has a single candidate range and equals MinMax. The measured settings are in
    benchmarks/README.md.

    ``recalibrate_threshold`` (default) refits the threshold on the INT8 model's own scores
    for the held-out normals (:mod:`anodet.export.recalibration`).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model, output = Path(model), Path(output)
    if output.is_dir():
        raise AnodetError(f"output {output} is a folder; give a file path such as {output / 'model_int8.onnx'}")
    if output.exists() and not force:
        raise AnodetError(f"output {output} exists; pass --force to overwrite")
    info = read_info(model)
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise AnodetError(f"unknown calibration method {method!r}; valid: {', '.join(methods)}")
    unknown = sorted(set(keep_fp32) - set(MODULES))
    if unknown:
        raise AnodetError(f"unknown module(s) {', '.join(unknown)} to keep in FP32; valid: {', '.join(MODULES)}")
    ds, rgb, depth = calibration_frames(info, calib, max_images)
    n_calib = rgb.shape[0]
    remove_orphans(output)  # work folders of killed runs hold ~100 MB each
    with tempfile.TemporaryDirectory(prefix=output.name + ".", suffix=".tmp", dir=output.parent) as tmp:
        pre, q = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(model), str(pre), skip_symbolic_shape=True)
        convs = quantizable_convs(onnx.load(str(pre)), tuple(keep_fp32))
        if not convs:
            raise AnodetError(f"{model}: no convolution left to quantize (keep_fp32={list(keep_fp32)})")
        log.info("quantizing %d convolutions with %d calibration frames", len(convs), n_calib)
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
        new_info, recal = dataclasses.replace(info, precision="int8"), None
        if recalibrate_threshold:
            new_info, recal = refit_int8(qm, info, ds.val or ds.train, quantizer="onnxruntime")
        write_metadata(qm, new_info)
        onnx.save(qm, str(q))
        cmp = compare_on_test(model, q, Path(calib), info) or {}
        result = QuantizeResult(None, time_model(model, rgb, depth), time_model(q, rgb, depth),
                                cmp.get("fp32_auroc"), cmp.get("int8_auroc"), n_calib,
                                cmp.get("fp32_false_alarms"), cmp.get("int8_false_alarms"), recal,
                                cmp.get("drop_sd"), cmp.get("test_images", 0))
        drop = result.auroc_drop
        if drop is not None and result.auroc_drop_sd is not None and result.auroc_drop_sd > max_auroc_drop:
            log.warning("the test split of %s (%d images) is too small to check a %.3f AUROC bound: the "
                        "drop's bootstrap sd is %.3f; evaluate on more test images", calib,
                        result.test_images, max_auroc_drop, result.auroc_drop_sd)
        if drop is not None and drop > max_auroc_drop and not accept:
            log.error("image AUROC dropped by %.4f (> %.4f): INT8 model not written", drop, max_auroc_drop)
            return result
        if drop is None:
            log.warning("%s has no test split with both classes: accuracy change not measured", calib)
        publish(q, output)
        result.path = output
    return result
