"""OpenVINO IR export: FP32, FP16 weights, or INT8 through NNCF with anodet's INT8 guard.

    REPORT = export_openvino("model.onnx", "model.xml", precision="fp16")

Writes ``model.xml`` + ``model.bin`` with the anodet metadata in the IR's runtime info (key
``anodet``; :mod:`anodet.runtime.backends.openvino` reads it). FP16 stores the weights in half
precision; the CPU still computes in FP32. INT8 follows ``anodet-export int8`` step by step and
reuses its parts (:mod:`anodet.export.quantize`, :mod:`anodet.export.recalibration`): NNCF
quantizes the same convolutions of the ONNX graph (the stem and other ``keep_fp32`` modules,
the blur, the normalisation and the scorer stay FP32) into QDQ form, the threshold is refitted
on the quantized graph's scores for held-out normals, and a model that lost more image AUROC
than ``max_auroc_drop`` on the test split is refused. OpenVINO runs that QDQ graph with INT8
kernels; its scores are compared with the same graph's in ONNX Runtime (``runtime_parity``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anodet.artifact import (
    METADATA_KEY,
    ModelInfo,
    Parity,
    compare_outputs,
    read_info,
    write_metadata,
)
from anodet.bench.timing import measure
from anodet.data.arrays import load_arrays
from anodet.data.samples import discover
from anodet.errors import AnodetError
from anodet.export.quantize import (
    DEFAULT_KEEP_FP32,
    MODULES,
    QuantizeResult,
    compare_on_test,
    quantizable_convs,
)
from anodet.export.recalibration import Recalibration, calibration_frames, refit_int8
from anodet.export.session import run_frames
from anodet.runtime.backends.openvino import OPENVINO_HINT, OpenVinoBackend

log = logging.getLogger(__name__)
PRECISIONS = ("fp32", "fp16", "int8")
NNCF_PRESETS = ("performance", "mixed")  # symmetric activations, or asymmetric ones (weights symmetric in both)


@dataclass
class OpenVinoExport:
    path: Path | None  # None when the INT8 model was refused
    precision: str
    parity: Parity | None  # the IR in OpenVINO vs the ONNX input in ONNX Runtime (calib frames)
    int8: QuantizeResult | None = None  # INT8: speed (OpenVINO CPU) and accuracy, as anodet-export int8
    runtime_parity: Parity | None = None  # INT8: the QDQ graph in OpenVINO vs in ONNX Runtime


def _save_ir(ov, source: Path, output: Path, info: ModelInfo, compress: bool) -> None:
    """Convert ``source`` (.onnx) to ``output`` (.xml + .bin) atomically: .bin first, then .xml."""
    model = ov.convert_model(str(source))
    model.set_rt_info(info.to_json(), [METADATA_KEY])
    with tempfile.TemporaryDirectory(dir=output.parent) as tmp:
        staged = Path(tmp) / output.name
        ov.save_model(model, str(staged), compress_to_fp16=compress)
        os.replace(staged.with_suffix(".bin"), output.with_suffix(".bin"))
        os.replace(staged, output)


def _ms(backend: OpenVinoBackend, rgb: np.ndarray, depth: np.ndarray | None) -> float:
    """Median ms per batch-1 inference."""
    d = None if depth is None else depth[:1]
    return float(np.median(measure(lambda: backend.predict(rgb[:1], d), warmup=2, runs=10)))


def _quantize(model: Path, tmp: Path, calib: Path, info: ModelInfo, *, images: int,
              keep_fp32: tuple[str, ...], recalibrate_threshold: bool, preset: str | None = None
              ) -> tuple[Path, ModelInfo, int, Recalibration | None]:
    """NNCF INT8 QDQ graph of ``model`` with refitted threshold in ``tmp``; (path, info, frames, refit)."""
    import nncf
    import onnx

    ds, rgb, depth = calibration_frames(info, calib, images)
    onnx_model = onnx.load(str(model))
    convs = set(quantizable_convs(onnx_model, keep_fp32))
    if not convs:
        raise AnodetError(f"{model}: no convolution left to quantize (keep_fp32={list(keep_fp32)})")
    step = info.batch or 1
    feeds = [{"rgb": rgb[i:i + step], **({} if depth is None else {"depth": depth[i:i + step]})}
             for i in range(0, rgb.shape[0] - step + 1, step)]
    # only the convolutions the ONNX Runtime path quantizes: every other node is ignored
    ignored = nncf.IgnoredScope(names=[n.name for n in onnx_model.graph.node if n.name not in convs], validate=False)
    log.info("NNCF: quantizing %d convolutions with %d calibration frames", len(convs), rgb.shape[0])
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(logging.WARNING)  # one INFO line per ignored node otherwise
    try:
        qm = nncf.quantize(onnx_model, nncf.Dataset(feeds), subset_size=len(feeds), ignored_scope=ignored,
                           preset=nncf.QuantizationPreset(preset) if preset else None)
    finally:
        nncf_log.setLevel(level)
    new_info, recal = dataclasses.replace(info, precision="int8"), None
    if recalibrate_threshold:
        new_info, recal = refit_int8(qm, info, ds.val or ds.train, quantizer="nncf")
    write_metadata(qm, new_info)
    path = tmp / "int8.onnx"
    onnx.save(qm, str(path))
    return path, new_info, rgb.shape[0], recal


def export_openvino(
    model: str | Path,
    output: str | Path,
    *,
    precision: str = "fp16",
    calib: str | Path | None = None,
    images: int = 64,
    max_auroc_drop: float = 0.01,
    accept: bool = False,
    keep_fp32: tuple[str, ...] = DEFAULT_KEEP_FP32,
    recalibrate_threshold: bool = True,
    nncf_preset: str | None = None,
    force: bool = False,
) -> OpenVinoExport:
    """Write the OpenVINO IR ``output`` (.xml, with .bin beside it) of the anodet ONNX ``model``.

    calib: a dataset; needed for INT8 (calibration, threshold refit, test-split accuracy), and
    used for the parity check of FP32/FP16 when given. See ``anodet.export.quantize`` for
    ``images``, ``max_auroc_drop``, ``accept``, ``keep_fp32`` and ``recalibrate_threshold``.
    nncf_preset: NNCF's quantization preset (``NNCF_PRESETS``; None: NNCF's default, performance).
    """
    try:
        import openvino as ov
    except ImportError:
        raise AnodetError(f"anodet-export openvino needs OpenVINO: {OPENVINO_HINT}") from None
    model, output = Path(model), Path(output)
    if precision not in PRECISIONS:
        raise AnodetError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if output.suffix.lower() != ".xml":
        raise AnodetError(f"output {output} must be an OpenVINO IR .xml (its .bin is written beside it)")
    if (output.exists() or output.with_suffix(".bin").exists()) and not force:
        raise AnodetError(f"output {output} (or its .bin) exists; pass --force to overwrite")
    if model.suffix.lower() != ".onnx":
        raise AnodetError(f"anodet-export openvino converts an anodet .onnx, not {model.name}")
    unknown = sorted(set(keep_fp32) - set(MODULES))
    if unknown:
        raise AnodetError(f"unknown module(s) {', '.join(unknown)} to keep in FP32; valid: {', '.join(MODULES)}")
    if nncf_preset is not None and nncf_preset not in NNCF_PRESETS:
        raise AnodetError(f"unknown NNCF preset {nncf_preset!r}; valid: {', '.join(NNCF_PRESETS)}")
    if precision == "int8" and calib is None:
        raise AnodetError("INT8 needs --calib, a dataset whose normal images calibrate it")
    info = read_info(model)  # refuses non-anodet models
    output.parent.mkdir(parents=True, exist_ok=True)
    frames = None
    if calib is not None:
        cal = info.calibration
        ds = discover(calib, need_depth=info.needs_depth, val_fraction=cal.val_fraction, seed=cal.seed)
        frames = load_arrays((ds.val or ds.train)[:16], info.preprocess, need_depth=info.needs_depth,
                             desc="parity frames")
    if precision != "int8":
        _save_ir(ov, model, output, dataclasses.replace(info, precision=precision), precision == "fp16")
        parity = None
        if frames is not None:
            got = OpenVinoBackend(output).predict(*frames)
            parity = compare_outputs(run_frames(model, *frames), got, precision=precision)
        return OpenVinoExport(output, precision, parity)

    with tempfile.TemporaryDirectory(dir=output.parent) as tmp:
        qdq, q_info, n_calib, recal = _quantize(model, Path(tmp), Path(calib), info, images=images,
                                         keep_fp32=tuple(keep_fp32), recalibrate_threshold=recalibrate_threshold,
                                         preset=nncf_preset)
        staged_fp32, staged = Path(tmp) / "fp32.xml", Path(tmp) / "int8.xml"
        _save_ir(ov, model, staged_fp32, info, False)
        _save_ir(ov, qdq, staged, q_info, False)
        fp32_ov, int8_ov = OpenVinoBackend(staged_fp32), OpenVinoBackend(staged)
        runtime_parity = compare_outputs(run_frames(qdq, *frames), int8_ov.predict(*frames), precision="fp16")
        cmp = compare_on_test(model, qdq, Path(calib), info) or {}
        result = QuantizeResult(None, _ms(fp32_ov, *frames), _ms(int8_ov, *frames), cmp.get("fp32_auroc"),
                                cmp.get("int8_auroc"), n_calib, cmp.get("fp32_false_alarms"),
                                cmp.get("int8_false_alarms"), recal, cmp.get("drop_sd"), cmp.get("test_images", 0))
        report = OpenVinoExport(None, "int8", None, result, runtime_parity)
        drop = result.auroc_drop
        if not runtime_parity.ok:
            log.warning("OpenVINO and ONNX Runtime disagree on the INT8 graph (%s)", runtime_parity.describe())
        if drop is not None and drop > max_auroc_drop and not accept:
            log.error("image AUROC dropped by %.4f (> %.4f): INT8 IR not written", drop, max_auroc_drop)
            return report
        if drop is None:
            log.warning("%s has no test split with both classes: accuracy change not measured", calib)
        fp32_ov.close()
        int8_ov.close()
        os.replace(staged.with_suffix(".bin"), output.with_suffix(".bin"))
        os.replace(staged, output)
        report.path = output
    return report
