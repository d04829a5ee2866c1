"""Calibrated masks: the pixel threshold, the scorer's mask and the regions events carry."""

from __future__ import annotations

import json

import numpy as np
import pytest

from anodet.calibration import pixel_threshold
from anodet.runtime.regions import MAX_REGIONS, find_regions, regions_record


def test_pixel_threshold_keeps_the_false_positive_budget():
    rng = np.random.default_rng(0)
    maps = rng.gamma(2.0, 1.0, (10, 32, 32)).astype(np.float32)
    for fpr in (0.001, 0.01, 0.1):
        thr = pixel_threshold(maps, fpr)
        assert np.mean(maps > thr) == pytest.approx(fpr, abs=0.5 / maps.size + 1e-3)
    with pytest.raises(ValueError, match="pixel_fpr"):
        pixel_threshold(maps, 0.0)


def test_scorer_masks_at_the_pixel_threshold_and_only_flagged_images():
    torch = pytest.importorskip("torch")
    from anodet.models.scoring import Scorer

    sc = Scorer(image_size=8, blur_sigma=0, feature_size=8)
    sc.set_calibration(raw_threshold=1.0, score_scale=2.0, pixel_raw_threshold=0.6)
    raw = torch.zeros(2, 8, 8)
    raw[0, 1:3, 1:3] = 0.8  # above the pixel threshold, but the image is judged good (max 0.8 < 1.0)
    raw[1, 4:6, 4:7] = 1.4  # flagged image: its pixels above 0.6 form the mask
    raw[1, 0, 0] = 0.7
    out = sc.decide(raw)
    assert out["score"][0] < 0.5 < out["score"][1]
    assert int(out["mask"][0].sum()) == 0  # a good part reports no defect region
    assert int(out["mask"][1].sum()) == 7 and out["mask"][1, 0, 0] == 1
    assert sc.pixel_threshold == pytest.approx((0.6 - 1.0) / 2.0 + 0.5)
    # With a peak share the mask also needs that share of the way to the frame's peak (1.4 here):
    # level = 0.6 + 0.5 * (1.4 - 0.6) = 1.0, so only the 6 pixels at 1.4 remain.
    share = Scorer(image_size=8, blur_sigma=0, feature_size=8, mask_peak_share=0.5)
    share.set_calibration(raw_threshold=1.0, score_scale=2.0, pixel_raw_threshold=0.6)
    assert int(share.decide(raw)["mask"][1].sum()) == 6
    from anodet.calibration import mask_level

    assert mask_level(0.6, 1.4, 0.5) == pytest.approx(1.0) and mask_level(0.6, 0.5, 0.5) == 0.6
    # Without a pixel threshold the mask falls back to the image threshold.
    sc.set_calibration(1.0, 2.0)
    assert int(sc.decide(raw)["mask"][1].sum()) == 6


def test_old_checkpoints_without_a_pixel_threshold_load(tmp_path):
    pytest.importorskip("torch")
    from anodet.checkpoint import write_checkpoint
    from anodet.config import PRESETS, with_overrides
    from anodet.models.detector import build_detector, load_detector

    cfg = with_overrides(PRESETS["rgb_baseline"], "data", image_size=64)
    cfg = with_overrides(cfg, "model", backbone="resnet18", feature_size=16, latent_dim=8)
    det = build_detector(cfg, weights="none")
    det.scorer.set_calibration(0.25, 1.0, 0.1)
    state = {k: v for k, v in det.state_dict().items() if k != "scorer.pixel_raw_threshold"}
    write_checkpoint({"config": cfg.to_dict(), "model": state}, tmp_path / "old.pt")
    old = load_detector(tmp_path / "old.pt")
    assert float(old.scorer.pixel_raw_threshold) == pytest.approx(0.25)  # the image threshold, as before


def test_regions_are_components_in_frame_pixels():
    mask = np.zeros((16, 16), np.uint8)
    amap = np.zeros((16, 16), np.float32)
    mask[2:4, 2:6] = 1  # 8 px
    amap[3, 4] = 0.9
    mask[10:13, 10:13] = 1  # 9 px, largest first
    amap[11, 11] = 0.7
    regions = find_regions(mask, amap, frame_shape=(32, 64))  # frame is 2x taller, 4x wider
    assert [r.area_px for r in regions] == [9 * 8, 8 * 8]
    big, small = regions
    assert big.bbox == (40, 20, 12, 6) and big.peak_score == pytest.approx(0.7)
    assert small.bbox == (8, 4, 16, 4) and small.peak_score == pytest.approx(0.9)
    # centroid of columns 2..5 at model resolution is 3.5 -> (3.5 + 0.5) * 4 - 0.5 in the frame
    assert small.centroid == (pytest.approx(15.5), pytest.approx(5.5))
    rec = regions_record(regions)
    assert rec["region_count"] == 2 and json.loads(json.dumps(rec))["regions"][0]["bbox"] == [40, 20, 12, 6]
    assert find_regions(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.float32)) == []


def test_many_regions_are_truncated_but_counted():
    mask = np.zeros((40, 40), np.uint8)
    mask[::3, ::3] = 1  # 14 x 14 isolated pixels (a 2-step grid would be 8-connected)
    regions = find_regions(mask, mask.astype(np.float32))
    rec = regions_record(regions)
    assert rec["region_count"] == 14 * 14 and len(rec["regions"]) == MAX_REGIONS
