"""Anomaly detection metrics: image/pixel AUROC, AU-PRO (MVTec protocol), threshold metrics.

Torch-free: numpy, scikit-learn and OpenCV only. Inputs are per image, so images may differ
in size: ``labels`` (N,) with 1 = anomalous, ``scores`` (N,) image scores, ``masks`` a list of
N bool H_i x W_i ground-truth masks, ``maps`` a list of N float H_i x W_i anomaly maps (a 3-D
N x H x W array works too). Higher scores mean "more anomalous" everywhere.

Conventions, chosen once for all functions:
- A score or map value strictly greater than ``threshold`` is anomalous (as in the exported
  graph, where normalised scores > 0.5 are defects).
- The ranking metrics (``image_auroc``, ``pixel_auroc``, ``au_pro``) raise ``AnodetError``
  when they are undefined (one class only, no defect region). ``evaluate`` turns that into
  ``None`` plus an entry in its ``warnings`` list, so a report never crashes on a subset.
- A 0/0 ratio in ``threshold_metrics`` is 1.0 when the ground truth has no positives
  (nothing to find and nothing flagged is a perfect result) and 0.0 otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from anodet.calibration import mask_level
from anodet.errors import AnodetError
from anodet.evaluation.inputs import (
    Maps,
    Masks,
    as_labels,
    as_maps,
    as_masks,
    as_vector,
    check_pair,
)
from anodet.evaluation.pro import area_under_curve, au_pro, pro_curve

__all__ = ["area_under_curve", "au_pro", "evaluate", "fill_normal_masks", "image_auroc", "pixel_auroc",
           "pro_curve", "threshold_metrics"]


def image_auroc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve of image scores (N,) against labels (N,), 1 = anomalous.

    Raises AnodetError when only one class is present: the AUROC is undefined there and a
    silent NaN would propagate into tables unnoticed.
    """
    y, s = as_labels(labels), as_vector(scores, "scores")
    check_pair(y, s)
    if y.all() or not y.any():
        kind = "anomalous" if y.any() else "normal"
        raise AnodetError(f"image AUROC needs normal and anomalous images; all {y.size} are {kind}")
    return float(roc_auc_score(y, s))


def pixel_auroc(masks: Masks, maps: Maps) -> float:
    """AUROC over all pixels of all images; masks: N bool H_i x W_i, maps: N float H_i x W_i."""
    amaps = as_maps(maps)
    gts = as_masks(masks, amaps)
    y = np.concatenate([g.ravel() for g in gts]) if gts else np.zeros(0, bool)
    if y.all() or not y.any():
        raise AnodetError("pixel AUROC needs both defect and normal pixels in the masks")
    s = np.concatenate([m.ravel() for m in amaps])
    return float(roc_auc_score(y, s))




def _ratio(num: int, den: int, no_positives: bool) -> float:
    # 0/0: nothing to find and nothing flagged is perfect; otherwise it is a failure.
    if den == 0:
        return 1.0 if no_positives else 0.0
    return num / den


def _counts(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(tp, fp, fn) of bool predictions against bool truth."""
    return np.array([np.count_nonzero(pred & truth), np.count_nonzero(pred & ~truth),
                     np.count_nonzero(~pred & truth)], np.int64)


def _prf(counts: np.ndarray, prefix: str) -> dict[str, float]:
    tp, fp, fn = (int(c) for c in counts)
    none = tp + fn == 0
    return {
        f"{prefix}_precision": _ratio(tp, tp + fp, none),
        f"{prefix}_recall": _ratio(tp, tp + fn, none),
        # 2tp / (2tp + fp + fn) equals the harmonic mean of P and R whenever both are defined.
        f"{prefix}_f1": _ratio(2 * tp, 2 * tp + fp + fn, none),
    }


def threshold_metrics(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    masks: Masks | None,
    maps: Maps | None,
    threshold: float,
    pixel_threshold: float | None = None,
    peak_share: float = 0.0,
) -> dict[str, float | None]:
    """Decision metrics at the image threshold and the mask's pixel threshold.

    An image is anomalous when its score > threshold; a pixel is defective when the image is
    anomalous and its map value > calibration.mask_level(pixel_threshold, the image's peak,
    peak_share) (pixel_threshold defaults to threshold), as in the exported mask.
    Returns image_precision, image_recall, image_f1, image_accuracy, image_false_alarm_rate
    (share of normal images flagged; None without normal images) and, over all pixels of
    all images, pixel_precision, pixel_recall, pixel_f1, pixel_iou and
    pixel_false_positive_rate (share of normal pixels flagged; None when masks or maps is
    None). Shapes as in the module docstring.
    """
    pixel_threshold = threshold if pixel_threshold is None else pixel_threshold
    y, s = as_labels(labels), as_vector(scores, "scores")
    check_pair(y, s)
    pred = s > threshold
    out: dict[str, float | None] = _prf(_counts(pred, y), "image")
    out["image_accuracy"] = float(np.mean(pred == y)) if y.size else 1.0
    out["image_false_alarm_rate"] = float(np.mean(pred[y == 0])) if np.any(y == 0) else None
    out.update(pixel_precision=None, pixel_recall=None, pixel_f1=None, pixel_iou=None,
               pixel_false_positive_rate=None)
    if masks is None or maps is None:
        return out
    amaps = as_maps(maps)
    gts = as_masks(masks, amaps)
    # per image: no giant concatenated copies
    counts = np.zeros(3, np.int64)
    for gt, amap, flagged in zip(gts, amaps, pred):
        level = mask_level(pixel_threshold, float(amap.max()), peak_share)
        counts += _counts((amap > level) & flagged, gt)
    out.update(_prf(counts, "pixel"))
    tp, fp, fn = (int(c) for c in counts)
    out["pixel_iou"] = _ratio(tp, tp + fp + fn, tp + fn == 0)
    normal_px = sum(int(np.count_nonzero(~gt)) for gt in gts)
    out["pixel_false_positive_rate"] = fp / normal_px if normal_px else None
    return out


def fill_normal_masks(
    labels: Sequence[int] | np.ndarray, masks: Masks | None, maps: Maps
) -> list[np.ndarray | None]:
    """Per image, the mask to use for pixel metrics; None where it cannot be known.

    A normal image without a mask gets an all-False mask of its map's shape (normal images
    have no defect by definition; folder datasets often ship no mask for them). An anomalous
    image without a mask stays None: its defect pixels are unknown. ``masks=None`` means
    no ground truth at all: every entry is None.
    """
    y = as_labels(labels)
    if masks is None:
        return [None] * y.size
    masks = list(masks)
    if len(masks) != y.size:
        raise AnodetError(f"got {len(masks)} masks for {y.size} labels; need one each")
    return [np.zeros(np.shape(a), bool) if m is None and not lab else m
            for m, lab, a in zip(masks, y, maps)]


def evaluate(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    masks: Masks | None,
    maps: Maps,
    defect_types: Sequence[str] | None,
    threshold: float,
    *,
    pixel_threshold: float | None = None,
    peak_share: float = 0.0,
    fpr_limit: float = 0.3,
) -> dict[str, Any]:
    """All metrics for a test set, overall and per defect type; JSON-serialisable.

    threshold: the image threshold; pixel_threshold and peak_share: the mask's rule (see
    threshold_metrics).

    labels (N,), scores (N,), masks N x (bool H_i x W_i or None) or None, maps N x float
    H_i x W_i, defect_types (N,) strings (only anomalous images' are used) or None. Each
    defect type is scored on its own images plus all normal images (the MVTec convention).

    Keys: image_auroc, pixel_auroc, au_pro, threshold, pixel_threshold, fpr_limit, image_precision,
    image_recall, image_f1, image_accuracy, image_false_alarm_rate, pixel_precision,
    pixel_recall, pixel_f1, pixel_iou, pixel_false_positive_rate, num_images, num_normal, num_anomalous,
    per_defect {type: {num_images, num_anomalous, image_auroc, pixel_auroc, au_pro, image_*
    and pixel_* as above}}, warnings [str]. A metric that is undefined on its subset, or needs a mask an anomalous
    image lacks, is None and the reason is appended to ``warnings``.
    """
    y, s = as_labels(labels), as_vector(scores, "scores")
    check_pair(y, s)
    amaps = as_maps(maps)
    if len(amaps) != y.size:
        raise AnodetError(f"got {len(amaps)} anomaly maps for {y.size} labels; need one each")
    if defect_types is not None and len(defect_types) != y.size:
        raise AnodetError(f"got {len(defect_types)} defect types for {y.size} labels")
    gts = fill_normal_masks(y, masks, amaps)
    warnings: list[str] = []

    def attempt(scope: str, name: str, fn: Any, *args: Any) -> float | None:
        try:
            return fn(*args)
        except AnodetError as exc:  # undefined on this subset: record why, keep going
            warnings.append(f"{scope}: {name} skipped: {exc}")
            return None

    def subset(idx: np.ndarray, scope: str) -> dict[str, Any]:
        sy, ss, smaps = y[idx], s[idx], [amaps[i] for i in idx]
        smasks: list[Any] | None = [gts[i] for i in idx]
        out: dict[str, Any] = {"num_images": int(idx.size), "num_anomalous": int(sy.sum())}
        out["image_auroc"] = attempt(scope, "image_auroc", image_auroc, sy, ss)
        lacking = sum(m is None for m in smasks)
        if lacking:
            if masks is not None:
                why = f"{lacking} anomalous image(s) have no ground-truth mask"
                warnings.append(f"{scope}: pixel metrics skipped: {why}")
            elif scope == "overall":  # no masks at all: say it once, not per defect type
                warnings.append("pixel metrics skipped: no ground-truth masks were given")
            smasks = None
            out.update(pixel_auroc=None, au_pro=None)
        else:
            out["pixel_auroc"] = attempt(scope, "pixel_auroc", pixel_auroc, smasks, smaps)
            out["au_pro"] = attempt(scope, "au_pro", au_pro, smasks, smaps, fpr_limit)
        out.update(threshold_metrics(sy, ss, smasks, smaps if smasks else None, threshold, pixel_threshold,
                                     peak_share))
        return out

    result: dict[str, Any] = {"threshold": float(threshold), "fpr_limit": float(fpr_limit),
                              "pixel_threshold": float(threshold if pixel_threshold is None else pixel_threshold),
                              "mask_peak_share": float(peak_share)}
    result.update(subset(np.arange(y.size), "overall"))
    result["num_normal"] = int((~y).sum())
    per_defect: dict[str, dict[str, Any]] = {}
    if defect_types is not None:
        anomalous, normal = np.flatnonzero(y), np.flatnonzero(~y)
        for kind in sorted({str(defect_types[i]) for i in anomalous}):
            own = np.array([i for i in anomalous if str(defect_types[i]) == kind], dtype=int)
            per_defect[kind] = subset(np.concatenate([own, normal]), f"defect '{kind}'")
    result["per_defect"] = per_defect
    result["warnings"] = warnings
    return result
