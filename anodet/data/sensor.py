"""What a depth camera does to a rendered depth map: noise, quantisation, holes. Torch-free.

``anodet-synth --sensor`` picks one of SENSOR_NAMES. ``ideal`` is the generator's original
float depth (0.5 mm white noise, small dropouts, no quantisation); the others model Intel
RealSense D4xx active-stereo cameras from Intel's published figures:

- RMS depth noise grows with the square of the distance (stereo triangulation):
  RMS = z^2 * subpixel / (focal_px * baseline), focal_px = (Xres / 2) / tan(HFOV / 2), with a
  typical subpixel (disparity) RMS of ~0.08 px. Source: A. Grunnet-Jepsen, J. Sweetser,
  J. Woodfill, "Tuning depth cameras for best performance" (Intel RealSense white paper,
  rev. 2.0), depth RMS error section; optimal depth resolution of the D435 is 848 x 480.
  The same z / disparity relation is derived in "Subpixel Linearity Improvement for Intel
  RealSense Depth Camera D400 Series" (Grunnet-Jepsen et al., rev. 1.3).
- Baselines and fields of view: Intel RealSense D400 series product family datasheet
  (D435: 50 mm, depth HFOV 87 deg; D405: 18 mm, HFOV 87 deg, optimal 1280 x 720).
- Depth unit (one z16 step): 1 mm by default on the D435, 0.1 mm on the D405 (the SDK's
  ``depth_units`` option default of each model).
- The left imager is the depth reference (datasheet, "Stereo Vision Depth Technology
  Overview"), so background the right imager cannot see -- just left of a nearer edge --
  has no depth: the stereo shadow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from anodet.errors import AnodetError

IDEAL_NOISE = 0.0005  # metres, 1 sigma: the generator's original float depth
SPECKLE_RATE = 0.0026  # share of pixels seeding a 2 x 2 patch without depth
STEEP_SLOPE = 3.5  # |dz/dx| above which a wall often fails to match (about 74 deg)
STEEP_DROPOUT = 0.4  # chance that a pixel on such a wall has no depth


@dataclass(frozen=True)
class Sensor:
    """An active-stereo depth camera: the figures that set its noise, steps and shadows."""

    name: str
    baseline_m: float
    native_width_px: int  # optimal depth resolution (width) of the camera
    hfov_deg: float
    subpixel_px: float  # RMS disparity error, pixels at native resolution
    depth_unit_m: float  # one z16 step

    @property
    def focal_px(self) -> float:
        """Focal length at native resolution, pixels."""
        return self.native_width_px / 2 / math.tan(math.radians(self.hfov_deg) / 2)

    def rms_noise(self, z: np.ndarray | float) -> np.ndarray | float:
        """RMS depth error (metres) at distance ``z`` (metres): z^2 * subpixel / (f * B)."""
        return np.square(z) * self.subpixel_px / (self.focal_px * self.baseline_m)


SENSORS = {
    "d435": Sensor("d435", baseline_m=0.050, native_width_px=848, hfov_deg=87.0,
                   subpixel_px=0.08, depth_unit_m=0.001),
    "d405": Sensor("d405", baseline_m=0.018, native_width_px=1280, hfov_deg=87.0,
                   subpixel_px=0.08, depth_unit_m=0.0001),
}
SENSOR_NAMES = ("ideal", *SENSORS)


def focal_length(size: int) -> float:
    """Focal length of the rendering camera in pixels: the view is ~0.2 m wide at 0.5 m."""
    return 2.5 * size


def depth_to_xyz(depth: np.ndarray) -> np.ndarray:
    """Organized point cloud float32 H x W x 3 (metres) from depth; missing points all zero."""
    h, w = depth.shape
    f = focal_length(w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    x = (xx - (w - 1) / 2) * depth / f
    y = (yy - (h - 1) / 2) * depth / f
    return np.stack([x, y, depth], axis=-1).astype(np.float32)


def check_sensor(name: str) -> str:
    """Return ``name`` if it is a known sensor, else raise AnodetError listing the valid ones."""
    if name not in SENSOR_NAMES:
        raise AnodetError(f"unknown sensor {name!r}; valid: {', '.join(SENSOR_NAMES)}")
    return name


def stereo_shadow(depth: np.ndarray, focal_px: float, baseline_m: float) -> np.ndarray:
    """Pixels the right imager cannot see, bool H x W (left imager is the reference).

    depth: float32 H x W metres (> 0), focal_px: focal length of this image, pixels. A point at
    column x appears at x - f*B/z in the right image; it is hidden when a point to its right
    lands at or left of it there (that point is nearer). The hidden band left of an edge is
    f*B*(1/z_near - 1/z_far) pixels wide.
    """
    disparity = focal_px * baseline_m / np.maximum(depth, 1e-6)
    u = np.arange(depth.shape[1], dtype=np.float64)[None, :] - disparity
    # Smallest right-image column of any pixel to the right of each pixel, per row.
    right_min = np.minimum.accumulate(u[:, ::-1], axis=1)[:, ::-1]
    right_min = np.concatenate([right_min[:, 1:], np.full((u.shape[0], 1), np.inf)], axis=1)
    return u >= right_min


def quantise(depth: np.ndarray, unit_m: float) -> np.ndarray:
    """Round depth to whole multiples of ``unit_m`` as z16 does; 0 stays missing. float32."""
    steps = np.clip(np.round(depth / unit_m), 0, 65535)
    return (steps * unit_m).astype(np.float32)


def requantise(depth: np.ndarray, unit_m: float, rng: np.random.Generator) -> np.ndarray:
    """Depth as a z16 camera with ``unit_m`` steps would store it, at a random step phase.

    Training augmentation: the part's height against the step grid differs from frame to
    frame on a real line, so the rounding is offset by a uniform fraction of a step. float32
    H x W metres; 0 stays missing.
    """
    offset = np.float32(rng.uniform(0.0, unit_m))
    out = quantise(depth + offset, unit_m) - offset
    return np.where(depth > 0, np.maximum(out, unit_m), 0.0).astype(np.float32)


def _dropouts(rng: np.random.Generator, surface: np.ndarray, pitch_m: float) -> np.ndarray:
    """Small random patches and pixels on steep walls that fail to match. bool H x W."""
    speckle = rng.random(surface.shape) < SPECKLE_RATE
    dropout = rng.random(surface.shape) < STEEP_DROPOUT
    sy, sx = np.gradient(surface, pitch_m)
    missing = cv2.dilate(speckle.astype(np.uint8), np.ones((2, 2), np.uint8)) > 0
    return missing | ((np.hypot(sx, sy) > STEEP_SLOPE) & dropout)


def ideal_depth(rng: np.random.Generator, clean: np.ndarray, surface: np.ndarray,
                pitch_m: float) -> np.ndarray:
    """The generator's original float depth: clean + 0.5 mm white noise, small dropouts.

    clean: float32 H x W metres without noise; surface: height of the scene above the work
    surface (metres), whose slope decides where steep walls drop out; pitch_m: metres per pixel.
    """
    noise = rng.normal(0, IDEAL_NOISE, clean.shape).astype(np.float32)
    missing = _dropouts(rng, surface, pitch_m)
    return np.where(missing, 0.0, clean + noise).astype(np.float32)


def sensor_depth(rng: np.random.Generator, clean: np.ndarray, surface: np.ndarray,
                 pitch_m: float, focal_px: float, sensor: Sensor) -> np.ndarray:
    """What ``sensor`` reports for the scene: float32 H x W metres in depth-unit steps, 0 = none.

    Noise RMS follows the sensor's z^2 law and is correlated over one native pixel (the
    rendered image has its own pixel size); then dropouts, the stereo shadow, quantisation.
    focal_px: focal length of the rendered image (pixels), which sets the shadow width here.
    """
    native_px = (clean.mean() / sensor.focal_px) / pitch_m  # one camera pixel, rendered pixels
    n = cv2.GaussianBlur(rng.standard_normal(clean.shape).astype(np.float32), (0, 0),
                         max(native_px / 2, 0.3))
    n /= n.std() + 1e-8
    noisy = clean + sensor.rms_noise(clean).astype(np.float32) * n
    missing = _dropouts(rng, surface, pitch_m) | stereo_shadow(clean, focal_px, sensor.baseline_m)
    return quantise(np.where(missing, 0.0, noisy), sensor.depth_unit_m)
