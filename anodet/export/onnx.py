"""Export a trained detector to one fused ONNX graph, with metadata and a parity proof.

The graph goes from camera-space inputs (rgb uint8, depth in metres) to decisions: input
normalisation, backbone, aligner, autoencoder, scoring, upsampling, blur, score normalisation
and the calibrated threshold. The file is written to a temporary name, checked, compared with
PyTorch on real preprocessed samples stored in the checkpoint, and only then renamed into
place: a failed check never leaves a file under the output name.
"""

from __future__ import annotations

import copy
import datetime
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from anodet import __version__
from anodet.artifact import (
    INPUT_DEPTH,
    INPUT_RGB,
    OUTPUT_MAP,
    OUTPUT_MASK,
    OUTPUT_SCORE,
    OUTPUTS,
    Calibration,
    ModelInfo,
    Parity,
    compare_outputs,
    write_metadata,
)
from anodet.errors import AnodetError
from anodet.export.session import run_frames
from anodet.models.detector import Detector, load_detector
from anodet.outputs import atomic_write

log = logging.getLogger(__name__)
# torch.onnx's TorchScript exporter range; the graph's ops (reflection pad, resize) need 11+.
MIN_OPSET, MAX_OPSET = 11, 20


class ExportGraph(nn.Module):
    """Tuple-returning wrapper: the ONNX exporter wants positional outputs in a fixed order.

    With ``fp16`` the backbone, aligner and autoencoder run in half precision while input
    normalisation and scoring stay FP32: they are cheap, and the per-image depth mean and the
    squared error lose precision in FP16. Inputs and outputs keep their types, which is the
    graph TensorRT 11 (strongly typed, no FP16 builder flag) needs.
    """

    def __init__(self, det: Detector, fp16: bool = False):
        super().__init__()
        self.det, self.fp16 = det, fp16
        if fp16:
            for part in (det.backbone, det.aligner, det.autoencoder):
                part.half()

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor | None = None):
        d = self.det
        x = d.input_norm(rgb, depth)
        feats = d.aligner(d.backbone(x.half() if self.fp16 else x))
        raw = d.scorer.raw_map(feats.float(), d.autoencoder(feats).float())
        out = d.scorer.decide(raw)
        return out[OUTPUT_SCORE], out[OUTPUT_MAP], out[OUTPUT_MASK]


@dataclass
class ExportResult:
    path: Path
    info: ModelInfo
    parity: Parity
    size_mb: float


def model_info(det: Detector, *, batch: int | None, precision: str = "fp32") -> ModelInfo:
    """The metadata that travels with the exported model."""
    cfg = det.cfg
    ck = getattr(det, "checkpoint_info", {})
    return ModelInfo(
        version=__version__,
        preset=cfg.preset,
        in_channels=cfg.model.in_channels,
        image_size=cfg.data.image_size,
        preprocess=cfg.data.preprocess,
        raw_threshold=float(det.scorer.raw_threshold),
        score_scale=float(det.scorer.score_scale),
        batch=batch,
        calibration=Calibration(val_fraction=cfg.data.val_fraction, seed=cfg.train.seed,
                                threshold_method=cfg.train.threshold_method,
                                threshold_quantile=cfg.train.threshold_quantile,
                                pixel_fpr=(ck.get("calibration") or {}).get("pixel_fpr"),
                                depth_augment_units=tuple(cfg.train.depth_augment_units)),
        pixel_raw_threshold=float(det.scorer.pixel_raw_threshold),
        mask_peak_share=float(det.scorer.mask_peak_share),
        input_stats=dict(ck.get("input_stats") or {}),
        precision=precision,
        extra={
            "config": cfg.to_dict(),
            "weights_source": det.weights_source,
            "data_fingerprint": ck.get("data_fingerprint"),
            "calibration": ck.get("calibration"),
            "normalisation": {
                "rgb": "(x - rgb_mean) / rgb_std on 0-255 values, inside the graph",
                "rgb_mean": det.input_norm.rgb_mean.flatten().tolist(),
                "rgb_std": det.input_norm.rgb_std.flatten().tolist(),
                "depth": "minus each image's mean valid depth, divided by depth_scale, inside the graph",
                "depth_scale_m": float(det.input_norm.depth_scale),
            },
            "preprocessing_outside_graph": (
                "anodet.preprocess.prepare_frame: xyz -> z, hole filling, optional plane removal, "
                "resize to image_size (RGB area/cubic, depth nearest)"
            ),
            "exported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "torch_version": torch.__version__,
        },
    )


def parity_samples(det: Detector) -> tuple[np.ndarray, np.ndarray | None]:
    """The real preprocessed validation frames stored in the checkpoint at training time."""
    ck = getattr(det, "checkpoint_info", {})
    samples = ck.get("parity_samples")
    if not samples and "calibration" not in ck:
        raise AnodetError("the checkpoint is training state without a calibrated threshold (last.pt); "
                          "export checkpoints/best.pt, written when training ends")
    if not samples:
        raise AnodetError("the checkpoint holds no parity samples; retrain it with this anodet version")
    rgb = samples["rgb"].numpy()
    depth = samples["depth"].numpy() if samples.get("depth") is not None else None
    return rgb, depth


def _torch_outputs(det: Detector, rgb: np.ndarray, depth: np.ndarray | None) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = det(torch.from_numpy(rgb), torch.from_numpy(depth) if depth is not None else None)
    return {k: v.numpy() for k, v in out.items()}


def _check_output(path: Path, force: bool) -> None:
    if path.is_dir():
        raise AnodetError(f"output {path} is a folder; give a file path such as {path / 'model.onnx'}")
    if path.exists() and not force:
        raise AnodetError(f"output {path} exists; pass --force to overwrite")
    if not path.parent.exists():
        raise AnodetError(f"output folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise AnodetError(f"output folder {path.parent} is not writable")


def export_onnx(
    checkpoint: str | Path,
    output: str | Path,
    *,
    opset: int = 17,
    batch: int | None = 1,
    fp16: bool = False,
    force: bool = False,
) -> ExportResult:
    """Export ``checkpoint`` to ``output`` (.onnx). ``batch=None`` makes the batch dynamic."""
    output = Path(output)
    _check_output(output, force)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise AnodetError(f"--opset {opset} is not supported; valid: {MIN_OPSET} to {MAX_OPSET}")
    if batch is not None and batch < 1:
        raise AnodetError(f"--batch must be >= 1 (or use a dynamic batch), got {batch}")
    det = load_detector(checkpoint).eval()
    rgb, depth = parity_samples(det)
    info = model_info(det, batch=batch, precision="fp16" if fp16 else "fp32")
    with atomic_write(output, "ONNX model") as tmp:
        log.info("tracing %s (opset %d) into ONNX ...", checkpoint, opset)
        _trace(copy.deepcopy(det) if fp16 else det, tmp, info, opset, batch, fp16)
        det.eval()
        log.info("checking the graph and comparing it with PyTorch on %d stored frames ...", rgb.shape[0])
        model = onnx.load(str(tmp))
        _set_io_shapes(model, info)
        drop_empty_pad_values(model)
        write_metadata(model, info)
        model.producer_name, model.producer_version = "anodet", __version__
        onnx.save(model, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
        ref = _torch_outputs(det, rgb, depth)
        got = run_frames(tmp, rgb, depth)
        result = compare_outputs(ref, got, precision=info.precision)
        if not result.ok:
            raise AnodetError(f"parity check failed: {result.describe()}; nothing written to {output}")
    return ExportResult(output, info, result, output.stat().st_size / 2**20)


def _trace(det: Detector, path: Path, info: ModelInfo, opset: int, batch: int | None, fp16: bool) -> None:
    s = info.image_size
    n = batch or 2
    args = [torch.zeros(n, s, s, 3, dtype=torch.uint8)]
    names = [INPUT_RGB]
    if info.needs_depth:
        args.append(torch.full((n, s, s), 0.5))
        names.append(INPUT_DEPTH)
    dynamic = None
    if batch is None:
        dynamic = {name: {0: "batch"} for name in [*names, *OUTPUTS]}
    # The wrapper must be in eval mode: the exporter restores the wrapper's mode afterwards,
    # and a fresh nn.Module is in training mode, which would switch BatchNorm to batch stats.
    with warnings.catch_warnings():
        # The tracer warns about Python-side shape checks that are constant for a given config.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            ExportGraph(det, fp16).eval(), tuple(args), str(path), input_names=names, output_names=list(OUTPUTS),
            opset_version=opset, dynamic_axes=dynamic, dynamo=False, do_constant_folding=True,
        )


def drop_empty_pad_values(model: onnx.ModelProto) -> None:
    """Remove the empty ``constant_value`` input the TorchScript exporter gives every zero Pad.

    ONNX Runtime folds a zero Pad into the following convolution only when the value is absent
    or a constant; an empty name is neither, so without this every TF-"same" stride-2
    convolution of EfficientNet-Lite ran its Pad as a separate full-tensor copy.
    """
    for node in model.graph.node:
        if node.op_type == "Pad":
            while node.input and node.input[-1] == "":
                node.input.pop()


def _set_io_shapes(model: onnx.ModelProto, info: ModelInfo) -> None:
    """Write the contract's shapes on every input and output.

    The TorchScript exporter cannot infer the outputs' shapes through the reflection padding
    and leaves symbolic names that differ per output; Triton and TensorRT need one batch dim.
    """
    n, s = info.batch or "batch", info.image_size
    shapes = {INPUT_RGB: [n, s, s, 3], INPUT_DEPTH: [n, s, s], OUTPUT_SCORE: [n], OUTPUT_MAP: [n, s, s],
              OUTPUT_MASK: [n, s, s]}
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        del dims[:]
        for d in shapes[value.name]:
            dim = dims.add()
            if isinstance(d, int):
                dim.dim_value = d
            else:
                dim.dim_param = d
