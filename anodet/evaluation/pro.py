"""AU-PRO (MVTec protocol): the exact per-region-overlap curve and its normalised area. Torch-free.

Regions are 8-connected components of each ground-truth mask; the false-positive rate is over
all normal pixels of all images (good images included); the curve is integrated from FPR 0 to
``fpr_limit`` (trapezoid, interpolated at the limit) and divided by ``fpr_limit``.
"""

from __future__ import annotations

import cv2
import numpy as np

from anodet.errors import AnodetError
from anodet.evaluation.inputs import Maps, Masks, as_maps, as_masks


def pro_curve(masks: Masks, maps: Maps) -> tuple[np.ndarray, np.ndarray]:
    """The exact per-region-overlap curve: (fpr, pro), both (K+1,) float64, from (0, 0) to (1, 1).

    One point per distinct map value t (descending), for the rule "pixel >= t is flagged":
    fpr = flagged normal pixels / all normal pixels of all images (good images included),
    pro = mean over all 8-connected ground-truth regions of (flagged region pixels / area).
    Every pixel contributes a fixed step to one of the two sums, so one sort of all scores
    gives the whole curve; equal scores are merged because no threshold separates them.
    """
    amaps = as_maps(maps)
    gts = as_masks(masks, amaps)
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
