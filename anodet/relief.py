"""Local relief of a depth map: depth minus a smooth fit of the surface around each pixel. Torch-free.

Used by anodet.preprocess (``data.depth_relief_sigma``) in training and the runtime alike: a dent is
a departure from the surrounding surface whatever the part's pose, tilt or distance, and the fit
removes all of those. Measured on the hard suite in benchmarks/README.md ("Hard suite").
"""

from __future__ import annotations

import cv2
import numpy as np


def local_relief(depth: np.ndarray, sigma_x: float, sigma_y: float | None = None, *, step_m: float = 0.0
                 ) -> np.ndarray:
    """Depth minus a Gaussian-weighted fit of the surface around each pixel; float32 H x W metres.

    What a dent is, is a departure from the surrounding surface, whatever the part's pose, tilt or
    distance: the fit removes all of those and keeps relief on the scale of ``sigma`` (pixels of
    this image). The result is offset by the median valid depth so it stays positive metres and
    0 still means missing. The fit is a normalised convolution (holes get no weight), computed on
    a copy shrunk by up to sigma / 4, where the Gaussian is still smooth to a fraction of a pixel:
    the same fit at a few percent of the cost at camera resolution.

    The plain fit is a local plane (see _plane_fit). ``step_m`` > 0 makes it edge-aware instead:
    neighbours are also weighted by exp(-d^2 / (2 step_m^2)) for a depth difference d, so a machined
    step much taller than ``step_m`` (a rim, a rib, a bore) no longer bends the fit of the face
    beside it, which would paint a band of false relief along every edge as wide as the Gaussian.
    """
    sy = sigma_x if sigma_y is None else sigma_y
    h, w = depth.shape
    valid = (depth > 0).astype(np.float32)
    if not valid.any():
        return depth
    # Shrunk by sigma / 4 for the plain fit; by sigma / 8 for the edge-aware one, whose steps alias
    # into a staircase along rotated edges when the blocks grow larger.
    f = max(1, int(min(sigma_x, sy) // (8 if step_m > 0 else 4)))
    size = (max(1, w // f), max(1, h // f))
    ref = np.float32(np.median(depth[valid > 0]))
    # Relative to the median: float32 keeps 0.1 um resolution and the fit stays centred.
    rel = np.where(valid > 0, depth - ref, 0.0).astype(np.float32)
    small = cv2.resize(rel, size, interpolation=cv2.INTER_AREA) if f > 1 else rel
    small_valid = cv2.resize(valid, size, interpolation=cv2.INTER_AREA) if f > 1 else valid
    small = small / np.maximum(small_valid, 1e-6)
    sx_s, sy_s = sigma_x * size[0] / w, sy * size[1] / h
    if step_m > 0:
        # Edge-aware: a neighbour counts by how close its depth is to this pixel's, so the face
        # beside a rim or a bore is fitted from itself (OpenCV's bilateral filter; holes hold the
        # normalised value of their block, and fill_holes has usually filled them before).
        radius = int(np.ceil(2 * max(sx_s, sy_s)))
        fit = cv2.bilateralFilter(small.astype(np.float32), 2 * radius + 1, float(step_m), float(max(sx_s, sy_s)))
    else:
        fit = _plane_fit(small, small_valid, sx_s, sy_s)
    fit = cv2.resize(fit, (w, h), interpolation=cv2.INTER_LINEAR) if f > 1 else fit
    return np.where(valid > 0, np.maximum(rel - fit + ref, 1e-6), 0.0).astype(np.float32)


def _plane_fit(z: np.ndarray, weight: np.ndarray, sigma_x: float, sigma_y: float) -> np.ndarray:
    """Gaussian-weighted least-squares plane through ``z`` around every pixel, evaluated there. H x W.

    A weighted mean (a flat fit) lags behind a sloped face wherever its window is one-sided, at
    every rim and bore of a tilted part; a local plane does not.
    """
    h, w = z.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    xx, yy = (xx - w / 2) / max(sigma_x, 1e-6), (yy - h / 2) / max(sigma_y, 1e-6)  # well conditioned
    zw, wt = z.astype(np.float64) * weight, weight.astype(np.float64)

    def blur(a: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(a, (0, 0), sigmaX=sigma_x, sigmaY=sigma_y)

    s0, sx, sy = blur(wt), blur(wt * xx), blur(wt * yy)
    sxx, sxy, syy = blur(wt * xx * xx), blur(wt * xx * yy), blur(wt * yy * yy)
    sz, sxz, syz = blur(zw), blur(zw * xx), blur(zw * yy)
    a = np.stack([np.stack([s0, sx, sy], -1), np.stack([sx, sxx, sxy], -1), np.stack([sy, sxy, syy], -1)], -2)
    a += np.diag([1e-9, 1e-6, 1e-6]) * np.maximum(s0, 1e-9)[..., None, None]  # a lone pixel: a flat fit
    coef = np.linalg.solve(a, np.stack([sz, sxz, syz], -1)[..., None])[..., 0]
    return (coef[..., 0] + coef[..., 1] * xx + coef[..., 2] * yy).astype(np.float32)
