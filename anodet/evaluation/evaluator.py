"""Evaluate a checkpoint (PyTorch) or an exported model (ONNX/TensorRT via the runtime).

Both go through the same loop: preprocess each test image with the shared recipe, predict the
normalised map, upsample it to the ground-truth resolution (MVTec practice), then compute the
metrics at the calibrated threshold (0.5 in normalised units) and write the report.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from anodet.artifact import DECISION_THRESHOLD, OUTPUT_MAP, OUTPUT_SCORE
from anodet.calibration import mask_level
from anodet.data.samples import Sample, describe, discover, load_gt, load_sample
from anodet.errors import AnodetError
from anodet.evaluation import metrics as M
from anodet.experiment import failed_run_cleanup, prepare_out_dir
from anodet.preprocess import PreprocessSpec
from anodet.progress import progress_bar

log = logging.getLogger(__name__)


class Predictor(Protocol):
    def predict(self, rgb: np.ndarray, depth: np.ndarray | None) -> dict[str, np.ndarray]: ...


@dataclass
class ModelUnderTest:
    """What the evaluation loop needs: a predictor and the model's input recipe."""

    name: str
    predictor: Predictor
    in_channels: int
    spec: PreprocessSpec
    preset: str
    pixel_threshold: float  # the mask's threshold in normalised map units
    mask_peak_share: float = 0.0  # and the share of the way to each frame's peak it also needs


class TorchPredictor:
    """Batch predictions from a PyTorch detector (numpy in, numpy out)."""

    def __init__(self, det: Any, device: Any):
        self.det, self.device = det.to(device).eval(), device

    def predict(self, rgb: np.ndarray, depth: np.ndarray | None) -> dict[str, np.ndarray]:
        import torch

        with torch.no_grad():
            d = torch.from_numpy(depth).to(self.device) if depth is not None else None
            out = self.det(torch.from_numpy(rgb).to(self.device), d)
        return {k: v.cpu().numpy() for k, v in out.items()}


def open_model(checkpoint: str | Path | None = None, model: str | Path | None = None, *,
               device: str = "auto", backend: str = "auto") -> ModelUnderTest:
    """A checkpoint through PyTorch, or an exported file through the runtime backends."""
    if (checkpoint is None) == (model is None):
        raise AnodetError("give exactly one of --checkpoint (PyTorch) or --model (.onnx/.engine)")
    if checkpoint is not None:
        from anodet.checkpoint import warn_if_uncalibrated
        from anodet.experiment import resolve_device
        from anodet.models.detector import load_detector

        det = load_detector(checkpoint)
        warn_if_uncalibrated(det.checkpoint_info, Path(checkpoint))
        cfg = det.cfg
        return ModelUnderTest(f"checkpoint {checkpoint}", TorchPredictor(det, resolve_device(device)),
                              cfg.model.in_channels, cfg.data.preprocess, cfg.preset, det.scorer.pixel_threshold,
                              float(det.scorer.mask_peak_share))
    from anodet.runtime.backends import open_backend

    be = open_backend(model, backend)
    info = be.info
    return ModelUnderTest(f"{be.name} {model}", be, info.in_channels, info.preprocess, info.preset,
                          info.pixel_threshold, info.mask_peak_share)


def _batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def evaluate_model(mut: ModelUnderTest, data: str | Path, out: str | Path, *, save_maps: bool = False,
                   report: bool = True, batch: int = 4, max_panels: int | None = None) -> dict[str, Any]:
    """Run the test split of ``data`` through ``mut``; write metrics.json (+ maps, report).

    A run that fails removes the ``out`` folder it created (results already there stay).
    """
    if batch < 1:
        raise AnodetError(f"--batch must be >= 1, got {batch}")
    need_depth = mut.in_channels == 4
    ds = discover(data, need_depth=need_depth, need_train=False)
    log.info("data: %s", describe(ds))
    if not ds.test:
        raise AnodetError(f"{data}: the test split is empty; nothing to evaluate")
    created = not Path(out).exists()
    out_dir = prepare_out_dir(Path(out))
    with failed_run_cleanup(out_dir, created=created, keep=out_dir / "metrics.json"):
        return _evaluate(mut, ds, data, out_dir, save_maps, report, batch, max_panels)


def _evaluate(mut, ds, data, out_dir, save_maps, report, batch, max_panels) -> dict[str, Any]:
    need_depth = mut.in_channels == 4
    labels, scores, masks, maps, types = [], [], [], [], []
    small: list[tuple[np.ndarray, np.ndarray | None, np.ndarray]] = []  # model-size copies for panels
    bar = progress_bar(total=len(ds.test), desc="evaluating", unit="img", leave=False)
    try:
        _predict_all(mut, ds, batch, bar, need_depth, (labels, scores, masks, maps, types), small)
    finally:
        bar.close()  # an error message must not land on the bar's line
    result = M.evaluate(labels, scores, masks, maps, types, DECISION_THRESHOLD, pixel_threshold=mut.pixel_threshold,
                        peak_share=mut.mask_peak_share)
    result.update({"model": mut.name, "preset": mut.preset, "data": str(Path(data).resolve())})
    for w in result.get("warnings", []):
        log.warning("%s", w)
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    if save_maps:
        _save_maps(out_dir, ds.test, maps, scores)
    if report:
        _write_report(out_dir, ds.test, result, labels, scores, masks, maps, small, max_panels)
    return result


def _predict_all(mut, ds, batch, bar, need_depth, lists, small) -> None:
    """Predict every test image in batches; append to lists (labels, scores, masks, maps, types)."""
    labels, scores, masks, maps, types = lists
    for chunk in _batches(ds.test, batch):
        bar.update(len(chunk))
        loaded = [load_sample(s, mut.spec, need_depth=need_depth) for s in chunk]
        rgb = np.stack([x[0] for x in loaded])
        depth = np.stack([x[1] for x in loaded]) if need_depth else None
        pred = mut.predictor.predict(rgb, depth)
        for i, sample in enumerate(chunk):
            gt = load_gt(sample)
            amap = pred[OUTPUT_MAP][i].astype(np.float32)
            if gt is not None and gt.shape != amap.shape:
                amap_full = cv2.resize(amap, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR)
            else:
                amap_full = amap
            labels.append(sample.label)
            scores.append(float(pred[OUTPUT_SCORE][i]))
            masks.append(gt)
            maps.append(amap_full)
            types.append(sample.defect_type)
            small.append((rgb[i], depth[i] if depth is not None else None, amap))


def _save_maps(out_dir: Path, samples: list[Sample], maps: list[np.ndarray], scores: list[float]) -> None:
    """One float32 .npy per test image at ground-truth resolution, plus index.csv."""
    maps_dir = out_dir / "maps"
    maps_dir.mkdir(exist_ok=True)
    with open(maps_dir / "index.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["rgb_path", "defect_type", "label", "gt_path", "map_path", "score"])
        for i, (s, amap, score) in enumerate(zip(samples, maps, scores)):
            path = maps_dir / f"{i:05d}_{s.defect_type}_{s.rgb_path.stem}.npy"
            np.save(path, amap.astype(np.float32))
            w.writerow([s.rgb_path, s.defect_type, s.label, s.mask_path or "", path.name, f"{score:.9g}"])


def _write_report(out_dir, samples, result, labels, scores, masks, maps, small, max_panels) -> None:
    from anodet.evaluation import report

    rep = out_dir / "report"
    (rep / "panels").mkdir(parents=True, exist_ok=True)
    have_masks = all(m is not None for m in masks)
    report.save_curves(rep / "curves.png", labels, scores, masks if have_masks else None, maps if have_masks else None)
    order = sorted(range(len(samples)), key=lambda i: -report.miss_severity(labels[i], scores[i], DECISION_THRESHOLD))
    keep = set(order[:max_panels] if max_panels else order)
    rows = []
    for i in progress_bar(sorted(keep), desc="report", unit="panel", leave=False):
        s = samples[i]
        rgb, depth, amap = small[i]
        size = amap.shape[0]
        gt = masks[i]
        gt_small = cv2.resize(gt.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0 if gt is not None else None
        name = f"panels/{i:05d}_{s.defect_type}_{s.rgb_path.stem}.png"
        title = f"{s.defect_type} {s.rgb_path.name}: score {scores[i]:.3f}"
        level = mask_level(result["pixel_threshold"], float(amap.max()), result["mask_peak_share"])
        mask = (amap > level) & (scores[i] > DECISION_THRESHOLD)  # the exported mask's rule
        report.save_panel(rep / name, rgb, depth, amap, mask, gt_small, title)
        rows.append({"panel": name, "rgb_path": str(s.rgb_path), "defect_type": s.defect_type, "label": labels[i],
                     "score": scores[i], "anomalous": scores[i] > DECISION_THRESHOLD})
    report.write_html(rep, result, rows)
    # The report folder also gets a copy of the curves at the top level for quick access.
    (out_dir / "curves.png").write_bytes((rep / "curves.png").read_bytes())
