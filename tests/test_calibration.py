"""Score calibration rules shared by training and INT8 recalibration."""

import numpy as np
import pytest
import torch

from anodet.calibration import error_stats, threshold
from anodet.models.scoring import Scorer


def test_image_quantile_threshold_maps_the_quantile_to_one_half():
    maps = np.zeros((5, 4, 4), np.float32)
    maps[:, 0, 0] = [1.0, 2.0, 3.0, 4.0, 5.0]  # image maxima
    thr, scale = threshold(maps, "image_quantile", 0.75)
    assert thr == pytest.approx(4.0)  # linear interpolation between order statistics
    assert scale == pytest.approx((4.0 - 0.0) / 0.5)  # lowest normal pixel -> 0, threshold -> 0.5
    thr_px, _ = threshold(maps, "pixel_quantile", 0.5)
    assert thr_px == pytest.approx(0.0)  # most pixels are 0
    with pytest.raises(ValueError, match="threshold_method"):
        threshold(maps, "mean", 0.5)


def test_error_stats_divide_by_spread_with_the_median_in_quadrature():
    rng = np.random.default_rng(0)
    err = rng.random((6, 1, 3, 3)).astype(np.float32)
    sd = err.std(axis=0, ddof=1)
    mean, std = error_stats(err, "std")
    assert mean is None
    np.testing.assert_allclose(std, np.sqrt(sd**2 + np.median(sd) ** 2)[None], rtol=1e-6)
    zmean, zstd = error_stats(err, "zscore")
    np.testing.assert_allclose(zmean, err.mean(axis=0, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(zstd, std)
    assert error_stats(err, "none") == (None, None)
    # One image has no spread: identity instead of a division by zero.
    np.testing.assert_array_equal(error_stats(err[:1], "std")[1], np.ones((1, 1, 3, 3), np.float32))


def test_scorer_uses_the_shared_rule():
    err = torch.rand(6, 1, 3, 3)
    scorer = Scorer(image_size=12, blur_sigma=0.0, feature_size=3)
    scorer.set_error_stats(err, "zscore")
    mean, std = error_stats(err.numpy(), "zscore")
    np.testing.assert_allclose(scorer.err_std.numpy(), std)
    np.testing.assert_allclose(scorer.err_mean.numpy(), mean)


def test_per_modality_fusion_standardises_each_group_then_fuses():
    feats = torch.zeros(1, 4, 2, 2)
    recon = torch.zeros(1, 4, 2, 2)
    recon[0, 0, 0, 0] = 1.0  # a colour error at one position
    recon[0, 2:, :, :] = 3.0  # depth channels: a large error everywhere (sensor noise)
    joint = Scorer(image_size=2, blur_sigma=0.0, feature_size=2)
    assert joint.error(feats, recon).shape == (1, 1, 2, 2)
    fused = Scorer(image_size=2, blur_sigma=0.0, feature_size=2, groups=(2, 2), fusion="max")
    err = fused.error(feats, recon)
    assert err.shape == (1, 2, 2, 2) and float(err[0, 0, 0, 0]) == 0.5 and float(err[0, 1].min()) == 9.0
    fused.err_std[:, 1] = 9.0  # calibrated: the depth error is normal at 9
    raw = fused.raw_map(feats, recon)[0]
    assert float(raw[0, 0]) == 1.0 and float(raw[1, 1]) == 1.0  # max(0.5, 1) and max(0, 1)
    summed = Scorer(image_size=2, blur_sigma=0.0, feature_size=2, groups=(2, 2), fusion="sum")
    summed.err_std[:, 1] = 9.0
    assert float(summed.raw_map(feats, recon)[0, 0, 0]) == 1.5
    # the median floor of the spread is taken per group
    rng = np.random.default_rng(1)
    e = np.concatenate([rng.random((5, 1, 3, 3)), 100 * rng.random((5, 1, 3, 3))], axis=1)
    _, std = error_stats(e, "std")
    assert std[0, 0].max() < 2 and std[0, 1].min() > 10
