"""Small drawing helpers shared by the synthetic scenes (anodet.data.synthetic, anodet.data.hard_parts).

All sizes are pixels of the S x S image being drawn; outputs are float32 unless noted.
"""

from __future__ import annotations

import cv2
import numpy as np


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Unit-variance Gaussian-blurred white noise (float32)."""
    n = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), max(sigma, 0.5))
    return n / (n.std() + 1e-8)


def ramp(x: np.ndarray) -> np.ndarray:
    """Smooth 0..1 profile for bevels (sine ease, clipped)."""
    return np.sin(np.clip(x, 0.0, 1.0) * np.pi / 2)


def ellipse(s: int, centre: np.ndarray, radii: np.ndarray, angle: float) -> np.ndarray:
    """Normalised elliptical distance (1 on the ellipse) around ``centre`` (pixels)."""
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    dx, dy = xx - centre[0], yy - centre[1]
    ca, sa = np.cos(angle), np.sin(angle)
    u, v = ca * dx + sa * dy, -sa * dx + ca * dy
    return np.sqrt((u / radii[0]) ** 2 + (v / radii[1]) ** 2)


def polyline(rng: np.random.Generator, start: np.ndarray, steps: int, step: float,
              turn: float) -> np.ndarray:
    """A random walk from ``start``: int32 points for cv2.polylines."""
    angle, pts = rng.uniform(0, 2 * np.pi), [start.astype(np.float64)]
    for _ in range(steps):
        angle += rng.uniform(-turn, turn)
        direction = np.array([np.cos(angle), np.sin(angle)])
        pts.append(pts[-1] + step * rng.uniform(0.6, 1.4) * direction)
    return np.round(np.array(pts)).astype(np.int32)
