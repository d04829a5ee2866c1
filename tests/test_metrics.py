"""Metrics against scikit-learn, hand-computed AU-PRO cases and a brute-force reference."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from anodet.errors import AnodetError
from anodet.evaluation.metrics import (
    au_pro,
    evaluate,
    image_auroc,
    pixel_auroc,
    pro_curve,
    threshold_metrics,
)


def _random_set(rng: np.random.Generator, n: int = 12, size: int = 32, levels: int | None = None):
    """n images (every other one defective, rectangles), maps = noise + signal in defects."""
    masks, maps = [], []
    for i in range(n):
        mask = np.zeros((size, size + i % 3), bool)  # sizes differ on purpose
        if i % 2:
            for _ in range(2):
                y, x = rng.integers(0, size - 8, 2)
                mask[y : y + rng.integers(2, 8), x : x + rng.integers(2, 8)] = True
        amap = rng.random(mask.shape) + 0.7 * mask
        if levels:  # quantise: many ties
            amap = np.round(amap * levels) / levels
        masks.append(mask)
        maps.append(amap.astype(np.float32))
    labels = np.array([m.any() for m in masks], int)
    scores = np.array([m.max() for m in maps])
    return labels, scores, masks, maps


def _brute_force_au_pro(masks, maps, limit):
    """Independent reference: one explicit pass per distinct threshold, scipy labelling."""
    regions = []
    for mask in masks:
        lab, n = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [(len(regions), lab, k) for k in range(1, n + 1)]
    normal = np.concatenate([~m.ravel() for m in masks])
    allv = np.concatenate([m.ravel() for m in maps])
    fprs, pros = [0.0], [0.0]
    for t in np.unique(allv)[::-1]:
        fprs.append(np.sum((allv >= t) & normal) / normal.sum())
        per = []
        for img, mask in enumerate(masks):
            lab, n = ndimage.label(mask, structure=np.ones((3, 3)))
            per += [np.mean(maps[img][lab == k] >= t) for k in range(1, n + 1)]
        pros.append(np.mean(per))
    fprs, pros = np.array(fprs), np.array(pros)
    inside = fprs <= limit
    x, y = list(fprs[inside]), list(pros[inside])
    if x[-1] < limit:
        j = np.argmax(fprs > limit)
        x.append(limit)
        y.append(pros[j - 1] + (pros[j] - pros[j - 1]) * (limit - fprs[j - 1]) / (fprs[j] - fprs[j - 1]))
    return sum((x[i + 1] - x[i]) * (y[i + 1] + y[i]) / 2 for i in range(len(x) - 1)) / limit


def test_image_auroc_matches_sklearn_and_refuses_one_class():
    rng = np.random.default_rng(0)
    labels, scores = rng.integers(0, 2, 50), rng.random(50)
    assert image_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    with pytest.raises(AnodetError, match="normal and anomalous"):
        image_auroc([1, 1, 1], [0.1, 0.2, 0.3])


def test_pixel_auroc_matches_sklearn_on_mixed_sizes():
    _, _, masks, maps = _random_set(np.random.default_rng(1))
    expected = roc_auc_score(np.concatenate([m.ravel() for m in masks]),
                             np.concatenate([m.ravel() for m in maps]))
    assert pixel_auroc(masks, maps) == pytest.approx(expected)


def test_au_pro_perfect_map_is_one():
    _, _, masks, _ = _random_set(np.random.default_rng(2))
    assert au_pro(masks, [m.astype(np.float32) for m in masks]) == pytest.approx(1.0)


def test_au_pro_hand_computed():
    # 2 x 4 image, one region {(0,0),(0,1)} (area 2) and 6 normal pixels.
    # Scores: region 0.9 and 0.3; normal pixels 0.8, 0.2, 0.2, 0.1, 0.1, 0.1.
    # Curve (fpr, pro): t=0.9 -> (0, 1/2); t=0.8 -> (1/6, 1/2); t=0.3 -> (1/6, 1); then pro = 1.
    # Area to 0.3: 1/6 * 1/2 + (0.3 - 1/6) * 1 = 1/12 + 2/15 = 13/60; / 0.3 = 13/18.
    # Area to 1.0: 1/12 + 5/6 = 11/12.
    mask = np.array([[1, 1, 0, 0], [0, 0, 0, 0]], bool)
    amap = np.array([[0.9, 0.3, 0.8, 0.2], [0.2, 0.1, 0.1, 0.1]], np.float32)
    assert au_pro([mask], [amap]) == pytest.approx(13 / 18)
    assert au_pro([mask], [amap], fpr_limit=1.0) == pytest.approx(11 / 12)
    fpr, pro = pro_curve([mask], [amap])
    np.testing.assert_allclose(fpr, [0, 0, 1 / 6, 1 / 6, 3 / 6, 1])
    np.testing.assert_allclose(pro, [0, 0.5, 0.5, 1, 1, 1])


def test_au_pro_ties_are_one_point():
    # A constant map: every pixel ties, so the only points are (0,0) and (1,1); the diagonal
    # up to 0.3 (interpolated there) has area 0.045 -> 0.15. Splitting the tie in either
    # order would give 0 or 1 instead.
    mask = np.zeros((8, 8), bool)
    mask[2:4, 2:5] = True
    fpr, pro = pro_curve([mask], [np.full((8, 8), 0.5)])
    np.testing.assert_allclose(fpr, [0, 1])
    np.testing.assert_allclose(pro, [0, 1])
    assert au_pro([mask], [np.full((8, 8), 0.5)]) == pytest.approx(0.15)


def test_au_pro_uses_8_connectivity():
    # A 2x2 block touching a single pixel only diagonally: one region of area 5 under
    # 8-connectivity, two regions (areas 4 and 1) under 4-connectivity. The block scores 1,
    # the lone pixel 0, normal pixels 0.5. One region: PRO = 4/5 from FPR 0 on -> AU-PRO 0.8.
    # Two regions: PRO = (1 + 0) / 2 -> 0.5.
    mask = np.zeros((6, 6), bool)
    mask[0:2, 0:2] = True
    mask[2, 2] = True
    assert ndimage.label(mask)[1] == 2  # the case really separates the two rules
    amap = np.full((6, 6), 0.5)
    amap[0:2, 0:2] = 1.0
    amap[2, 2] = 0.0
    assert au_pro([mask], [amap]) == pytest.approx(0.8)


@pytest.mark.parametrize("levels", [None, 6])
@pytest.mark.parametrize("limit", [0.05, 0.3, 1.0])
def test_au_pro_matches_brute_force(levels, limit):
    _, _, masks, maps = _random_set(np.random.default_rng(3), n=6, size=16, levels=levels)
    assert au_pro(masks, maps, limit) == pytest.approx(_brute_force_au_pro(masks, maps, limit))


def test_au_pro_random_maps_near_015():
    rng = np.random.default_rng(4)
    _, _, masks, _ = _random_set(rng, n=40, size=64)
    maps = [rng.random(m.shape) for m in masks]
    assert au_pro(masks, maps) == pytest.approx(0.15, abs=0.03)


def test_au_pro_errors():
    with pytest.raises(AnodetError, match="region"):
        au_pro([np.zeros((4, 4), bool)], [np.zeros((4, 4))])
    with pytest.raises(AnodetError, match="shape"):
        au_pro([np.zeros((4, 4), bool)], [np.zeros((4, 5))])
    with pytest.raises(AnodetError, match="fpr_limit"):
        au_pro([np.ones((4, 4), bool)], [np.zeros((4, 4))], fpr_limit=0)
    with pytest.raises(AnodetError, match="NaN"):
        au_pro([np.eye(4, dtype=bool)], [np.full((4, 4), np.nan)])


def test_metrics_invariant_to_monotone_transform():
    labels, scores, masks, maps = _random_set(np.random.default_rng(6))
    types = ["a" if i % 4 == 1 else "b" for i in range(len(labels))]
    plain = evaluate(labels, scores, masks, maps, types, 0.8)
    warped = evaluate(labels, np.exp(scores), masks, [np.exp(m.astype(np.float64)) for m in maps],
                      types, float(np.exp(0.8)))
    for key, value in plain.items():
        if isinstance(value, float) and key not in ("threshold", "pixel_threshold"):
            assert warped[key] == pytest.approx(value), key
    assert warped["per_defect"]["a"]["au_pro"] == pytest.approx(plain["per_defect"]["a"]["au_pro"])


def test_threshold_metrics_hand_case():
    # Images: scores 0.9, 0.4 (anomalous), 0.6, 0.1 (normal) at 0.5 -> tp 1, fn 1, fp 1, tn 1.
    # Pixels: truth [[1,1],[0,0]], map [[.9,.2],[.7,.1]] -> tp 1, fn 1, fp 1, tn 1; IoU 1/3.
    mask = np.array([[1, 1], [0, 0]], bool)
    amap = np.array([[0.9, 0.2], [0.7, 0.1]])
    out = threshold_metrics([1, 1, 0, 0], [0.9, 0.4, 0.6, 0.1], [mask], [amap], 0.5)
    for key in ("image_precision", "image_recall", "image_f1", "image_accuracy",
                "pixel_precision", "pixel_recall", "pixel_f1"):
        assert out[key] == pytest.approx(0.5), key
    assert out["pixel_iou"] == pytest.approx(1 / 3)
    assert out["image_false_alarm_rate"] == pytest.approx(0.5)  # one of the two normals flagged
    # 0/0 rules: nothing to find and nothing flagged is perfect...
    empty = threshold_metrics([0, 0], [0.1, 0.2], [np.zeros((2, 2), bool)], [np.zeros((2, 2))], 0.5)
    assert empty.pop("image_false_alarm_rate") == 0.0 and empty.pop("pixel_false_positive_rate") == 0.0
    assert all(empty[k] == 1.0 for k in empty)
    # ...but nothing flagged while defects exist is a failure; a score equal to the
    # threshold is not anomalous (strictly greater is).
    missed = threshold_metrics([1], [0.5], [mask], [np.full((2, 2), 0.5)], 0.5)
    assert missed["image_precision"] == 0.0 and missed["image_recall"] == 0.0
    assert missed["pixel_f1"] == 0.0 and missed["pixel_iou"] == 0.0
    assert threshold_metrics([1], [0.9], None, None, 0.5)["pixel_iou"] is None
    assert missed["image_false_alarm_rate"] is None  # no normal image to raise an alarm on


def test_pixel_metrics_use_the_pixel_threshold_and_only_flagged_images():
    """As the exported mask: pixels above the pixel threshold, in images above the image threshold."""
    truth = np.array([[1, 1, 0, 0]], bool)
    hot = np.array([[0.9, 0.45, 0.42, 0.1]])  # flagged image (max 0.9)
    cool = np.array([[0.1, 0.1, 0.45, 0.1]])  # normal image below the image threshold
    out = threshold_metrics([1, 0], [0.9, 0.45], [truth, np.zeros_like(truth)], [hot, cool], 0.5, 0.4)
    # hot: tp 2 (0.9, 0.45), fp 1 (0.42); cool is not flagged, so its 0.45 pixel is no defect
    assert out["pixel_precision"] == pytest.approx(2 / 3) and out["pixel_recall"] == 1.0
    assert out["pixel_iou"] == pytest.approx(2 / 3)
    assert out["pixel_false_positive_rate"] == pytest.approx(1 / 6)
    default = threshold_metrics([1, 0], [0.9, 0.45], [truth, np.zeros_like(truth)], [hot, cool], 0.5)
    assert default["pixel_recall"] == 0.5  # at the image threshold only 0.9 is above


def test_evaluate_keys_per_defect_and_json():
    # 4 normal images scoring 0.3..0.6; "crack" images score above all of them (AUROC 1),
    # "hole" images below all of them (AUROC 0).
    normal = [0.3, 0.4, 0.5, 0.6]
    scores = normal + [0.9, 0.95, 0.1, 0.2]
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    types = ["good"] * 4 + ["crack", "crack", "hole", "hole"]
    masks, maps = [], []
    for lab, s in zip(labels, scores):
        mask = np.zeros((8, 8), bool)
        mask[2:5, 2:5] = bool(lab)
        masks.append(mask)
        maps.append(np.full((8, 8), 0.05) + mask * (s - 0.05))
    out = evaluate(labels, scores, masks, maps, types, 0.5)
    json.dumps(out, allow_nan=False)
    assert set(out["per_defect"]) == {"crack", "hole"}
    assert out["per_defect"]["crack"]["image_auroc"] == 1.0
    assert out["per_defect"]["hole"]["image_auroc"] == 0.0
    assert out["per_defect"]["crack"]["num_images"] == 6
    assert out["image_auroc"] == pytest.approx(image_auroc(labels, scores))
    assert out["au_pro"] == pytest.approx(au_pro(masks, maps))
    assert (out["num_images"], out["num_normal"], out["num_anomalous"]) == (8, 4, 4)
    for key in ("image_auroc", "pixel_auroc", "au_pro", "image_f1", "pixel_iou", "threshold"):
        assert type(out[key]) is float, key
    assert out["warnings"] == []


def test_evaluate_missing_masks():
    labels, scores, masks, maps = _random_set(np.random.default_rng(7), n=8)
    types = ["a", "a", "b", "b"] * 2  # anomalous images: 1, 5 -> a; 3, 7 -> b
    # Normal images without a mask count as defect-free: same result as explicit zeros.
    no_normal = [m if lab else None for m, lab in zip(masks, labels)]
    assert evaluate(labels, scores, no_normal, maps, types, 0.5)["au_pro"] == pytest.approx(
        evaluate(labels, scores, masks, maps, types, 0.5)["au_pro"])
    # An anomalous image without a mask: pixel metrics skipped where it takes part.
    holes = list(masks)
    holes[3] = None  # defect type "b"
    out = evaluate(labels, scores, holes, maps, types, 0.5)
    assert out["pixel_auroc"] is None and out["au_pro"] is None and out["pixel_f1"] is None
    assert out["image_auroc"] is not None and out["image_f1"] is not None
    assert out["per_defect"]["a"]["au_pro"] is not None
    assert out["per_defect"]["b"]["au_pro"] is None
    assert any("no ground-truth mask" in w for w in out["warnings"])
    # No masks at all: one warning, image metrics still there.
    out = evaluate(labels, scores, None, maps, types, 0.5)
    assert out["pixel_auroc"] is None and out["image_auroc"] is not None
    assert len(out["warnings"]) == 1


def test_evaluate_undefined_subset_warns_instead_of_raising():
    mask = np.zeros((4, 4), bool)
    out = evaluate([0, 0], [0.1, 0.2], [mask, mask], [np.zeros((4, 4))] * 2, None, 0.5)
    assert out["image_auroc"] is None and out["au_pro"] is None
    assert out["per_defect"] == {}
    assert any("image_auroc" in w for w in out["warnings"])
