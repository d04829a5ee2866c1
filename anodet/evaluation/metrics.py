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

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from anodet.errors import AnodetError

Maps = Sequence[np.ndarray] | np.ndarray
Masks = Sequence[np.ndarray | None] | np.ndarray


def _as_vector(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size and not np.all(np.isfinite(arr)):
        raise AnodetError(f"{name} contain NaN or infinite values; pass finite numbers")
    return arr


def _as_labels(labels: Any) -> np.ndarray:
    arr = np.asarray(labels).reshape(-1)
    if arr.dtype != bool and not np.all(np.isin(arr, (0, 1))):
        raise AnodetError("labels must be 0 (normal) or 1 (anomalous), or booleans")
    return arr.astype(bool)


def _as_maps(maps: Maps) -> list[np.ndarray]:
    out = []
    for i, m in enumerate(maps):
        m = np.asarray(m)
        if m.ndim != 2:
            raise AnodetError(f"anomaly map {i} has shape {m.shape}; expected H x W")
        if not np.all(np.isfinite(m)):
            raise AnodetError(f"anomaly map {i} contains NaN or infinite values")
        out.append(m)
    return out


def _as_masks(masks: Masks, maps: list[np.ndarray]) -> list[np.ndarray]:
    masks = list(masks)
    if len(masks) != len(maps):
        raise AnodetError(f"got {len(masks)} masks for {len(maps)} anomaly maps; need one each")
    out = []
    for i, (mask, amap) in enumerate(zip(masks, maps)):
        if mask is None:
            raise AnodetError(
                f"mask {i} is None; pixel metrics need a ground-truth mask for every image "
                "(evaluate() skips them instead)"
            )
        mask = np.asarray(mask)
        if mask.shape != amap.shape:
            raise AnodetError(f"mask {i} has shape {mask.shape} but its map has {amap.shape}")
        out.append(mask.astype(bool))
    return out


def _check_pair(labels: np.ndarray, scores: np.ndarray) -> None:
    if labels.shape != scores.shape:
        raise AnodetError(f"got {labels.size} labels for {scores.size} scores; need one each")


def image_auroc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve of image scores (N,) against labels (N,), 1 = anomalous.

    Raises AnodetError when only one class is present: the AUROC is undefined there and a
    silent NaN would propagate into tables unnoticed.
    """
    y, s = _as_labels(labels), _as_vector(scores, "scores")
    _check_pair(y, s)
    if y.all() or not y.any():
        kind = "anomalous" if y.any() else "normal"
        raise AnodetError(f"image AUROC needs normal and anomalous images; all {y.size} are {kind}")
    return float(roc_auc_score(y, s))


def pixel_auroc(masks: Masks, maps: Maps) -> float:
    """AUROC over all pixels of all images; masks: N bool H_i x W_i, maps: N float H_i x W_i."""
    amaps = _as_maps(maps)
    gts = _as_masks(masks, amaps)
    y = np.concatenate([g.ravel() for g in gts]) if gts else np.zeros(0, bool)
    if y.all() or not y.any():
        raise AnodetError("pixel AUROC needs both defect and normal pixels in the masks")
    s = np.concatenate([m.ravel() for m in amaps])
    return float(roc_auc_score(y, s))


def pro_curve(masks: Masks, maps: Maps) -> tuple[np.ndarray, np.ndarray]:
    """The exact per-region-overlap curve: (fpr, pro), both (K+1,) float64, from (0, 0) to (1, 1).

    One point per distinct map value t (descending), for the rule "pixel >= t is flagged":
    fpr = flagged normal pixels / all normal pixels of all images (good images included),
    pro = mean over all 8-connected ground-truth regions of (flagged region pixels / area).
    Every pixel contributes a fixed step to one of the two sums, so one sort of all scores
    gives the whole curve; equal scores are merged because no threshold separates them.
    """
    amaps = _as_maps(maps)
    gts = _as_masks(masks, amaps)
    inv_area = []  # per pixel: 1 / area of its region, 0 for normal pixels
    num_regions = 0
    for gt in gts:
        n, lab = cv2.connectedComponents(gt.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
        num_regions += n - 1  # label 0 is the background
        areas = np.bincount(lab.ravel(), minlength=n).astype(np.float64)
        weight = np.zeros(n, np.float64)
        weight[1:] = 1.0 / areas[1:]
        inv_area.append(weight[lab.ravel()])
    normal = np.concatenate([~g.ravel() for g in gts]) if gts else np.zeros(0, bool)
    num_normal = int(normal.sum())
    if num_regions == 0:
        raise AnodetError("AU-PRO needs at least one defect region in the ground-truth masks")
    if num_normal == 0:
        raise AnodetError("AU-PRO needs normal pixels; every ground-truth pixel is a defect")

    scores = np.concatenate([m.ravel() for m in amaps])
    order = np.argsort(scores)[::-1]  # descending; order among ties is irrelevant (merged below)
    sorted_scores = scores[order]
    # Integer counts keep the FPR exact; the PRO sum is float but well conditioned.
    fpr = np.cumsum(normal[order], dtype=np.int64) / num_normal
    pro = np.cumsum(np.concatenate(inv_area)[order]) / num_regions
    # The last index of each run of equal scores is where the curve has a point.
    ends = np.flatnonzero(np.diff(sorted_scores) != 0)
    ends = np.append(ends, sorted_scores.size - 1)
    fpr = np.concatenate([[0.0], fpr[ends]])
    pro = np.concatenate([[0.0], np.minimum(pro[ends], 1.0)])
    pro[-1] = 1.0  # every region is fully covered at the lowest threshold; drop rounding error
    return fpr, pro


def area_under_curve(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid area under y(x) for x in [0, x_max]; x (K,) non-decreasing and starting at 0.

    If x_max falls between two points, y is linearly interpolated there (MVTec's protocol);
    vertical steps (repeated x) contribute nothing, as they should.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    keep = int(np.searchsorted(x, x_max, side="right"))  # points with x <= x_max
    xs, ys = x[:keep], y[:keep]
    if keep < x.size and xs[-1] < x_max:
        x0, x1, y0, y1 = x[keep - 1], x[keep], y[keep - 1], y[keep]
        xs = np.append(xs, x_max)
        ys = np.append(ys, y0 + (y1 - y0) * (x_max - x0) / (x1 - x0))
    return float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2.0))


def au_pro(masks: Masks, maps: Maps, fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit``, in [0, 1]; random maps give
    about fpr_limit / 2. Masks: N bool H_i x W_i; maps: N float H_i x W_i."""
    if not 0.0 < fpr_limit <= 1.0:
        raise AnodetError(f"fpr_limit must be in (0, 1]; got {fpr_limit}")
    fpr, pro = pro_curve(masks, maps)
    return area_under_curve(fpr, pro, fpr_limit) / fpr_limit


def _ratio(num: int, den: int, no_positives: bool) -> float:
    # 0/0: nothing to find and nothing flagged is perfect; otherwise it is a failure.
    if den == 0:
        return 1.0 if no_positives else 0.0
    return num / den


def _prf(pred: np.ndarray, truth: np.ndarray, prefix: str) -> dict[str, float]:
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred & ~truth))
    fn = int(np.count_nonzero(~pred & truth))
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
) -> dict[str, float | None]:
    """Decision metrics at one threshold (value > threshold is anomalous).

    Returns image_precision, image_recall, image_f1, image_accuracy, image_false_alarm_rate
    (share of normal images flagged; None without normal images) and, over all pixels of
    all images, pixel_precision, pixel_recall, pixel_f1, pixel_iou (None when masks or maps
    is None). Shapes as in the module docstring.
    """
    y, s = _as_labels(labels), _as_vector(scores, "scores")
    _check_pair(y, s)
    pred = s > threshold
    out: dict[str, float | None] = _prf(pred, y, "image")
    out["image_accuracy"] = float(np.mean(pred == y)) if y.size else 1.0
    out["image_false_alarm_rate"] = float(np.mean(pred[y == 0])) if np.any(y == 0) else None
    out.update(pixel_precision=None, pixel_recall=None, pixel_f1=None, pixel_iou=None)
    if masks is None or maps is None:
        return out
    amaps = _as_maps(maps)
    gts = _as_masks(masks, amaps)
    tp = fp = fn = 0
    for gt, amap in zip(gts, amaps):  # per image: no giant concatenated copies
        hit = amap > threshold
        tp += int(np.count_nonzero(hit & gt))
        fp += int(np.count_nonzero(hit & ~gt))
        fn += int(np.count_nonzero(~hit & gt))
    none = tp + fn == 0
    out["pixel_precision"] = _ratio(tp, tp + fp, none)
    out["pixel_recall"] = _ratio(tp, tp + fn, none)
    out["pixel_f1"] = _ratio(2 * tp, 2 * tp + fp + fn, none)
    out["pixel_iou"] = _ratio(tp, tp + fp + fn, none)
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
    y = _as_labels(labels)
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
    fpr_limit: float = 0.3,
) -> dict[str, Any]:
    """All metrics for a test set, overall and per defect type; JSON-serialisable.

    labels (N,), scores (N,), masks N x (bool H_i x W_i or None) or None, maps N x float
    H_i x W_i, defect_types (N,) strings (only anomalous images' are used) or None. Each
    defect type is scored on its own images plus all normal images (the MVTec convention).

    Keys: image_auroc, pixel_auroc, au_pro, threshold, fpr_limit, image_precision,
    image_recall, image_f1, image_accuracy, image_false_alarm_rate, pixel_precision,
    pixel_recall, pixel_f1, pixel_iou, num_images, num_normal, num_anomalous,
    per_defect {type: {num_images, num_anomalous, image_auroc, pixel_auroc, au_pro, image_*
    and pixel_* as above}}, warnings [str]. A metric that is undefined on its subset, or needs a mask an anomalous
    image lacks, is None and the reason is appended to ``warnings``.
    """
    y, s = _as_labels(labels), _as_vector(scores, "scores")
    _check_pair(y, s)
    amaps = _as_maps(maps)
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
        out.update(threshold_metrics(sy, ss, smasks, smaps if smasks else None, threshold))
        return out

    result: dict[str, Any] = {"threshold": float(threshold), "fpr_limit": float(fpr_limit)}
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
