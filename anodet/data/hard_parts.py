"""The hard suite: a brushed-metal bracket with defects near the limit of what the sensor shows.

``anodet-synth --difficulty hard`` renders it. The part is a machined plate (5 mm thick, two
slots and a bore) with a 12 mm rib along one long edge, brushed along its length, lying on the
work surface at a random in-plane rotation (``rotation_deg``) and tilted by up to ``tilt_deg``
(a part resting on a chip or a worn fixture). Depth comes from a D4xx model by default (1 mm
z16 steps, z^2 noise, stereo shadows beside the rib, speckle). Defect families:

- ``dent``: shallow smooth dents (``dent_depth_mm``), depth only: the shading follows the
  nominal surface, as for a dent too shallow to catch the light.
- ``scratch``: thin low-contrast lines (``scratch_width_px``, ``scratch_contrast``) running
  within 20 degrees of the brushing direction, colour only (micrometres deep: no depth change).
- ``chip``: small pieces broken off the plate's edge (``chip_radius_px``): the edge recedes in
  depth and the fracture is brighter bare metal.

Sizes are given at 256 px and scale with the image. Nuisances and defects draw from separate
streams, as in :mod:`anodet.data.synthetic`, so a frame with and without its defect differ
only by the defect.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import cv2
import numpy as np

from anodet.data import sensor as sensors
from anodet.data.shapes import ellipse, ramp, smooth_noise
from anodet.errors import AnodetError

HARD_DEFECT_TYPES = ("dent", "scratch", "chip")
HARD_SENSOR = "d435"
PLANE_Z = 0.5  # metres to the work surface, as in anodet.data.synthetic
_LIGHT = np.array([-0.30, -0.40, 0.87]) / np.linalg.norm([-0.30, -0.40, 0.87])


@dataclass(frozen=True)
class HardParams:
    """What makes the suite hard; ranges are (low, high), drawn uniformly per defect."""

    dent_depth_mm: tuple[float, float] = (1.0, 3.0)
    dent_radius_px: tuple[float, float] = (10.0, 20.0)
    scratch_width_px: float = 1.5
    scratch_contrast: tuple[float, float] = (0.15, 0.30)  # relative albedo change
    scratch_length_px: tuple[float, float] = (30.0, 70.0)
    chip_radius_px: tuple[float, float] = (5.0, 9.0)
    rotation_deg: float = 15.0  # in-plane rotation, +-
    tilt_deg: float = 1.5  # out-of-plane tilt of the part, +- about each image axis
    brushing: float = 0.06  # strength of the brushed texture (relative albedo)

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self) -> HardParams:
        for name in ("dent_depth_mm", "dent_radius_px", "scratch_contrast", "scratch_length_px", "chip_radius_px"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise AnodetError(f"hard suite: {name} must be 0 < low <= high, got {lo}, {hi}")
        if self.scratch_width_px <= 0 or self.rotation_deg < 0 or self.tilt_deg < 0 or self.brushing < 0:
            raise AnodetError("hard suite: scratch_width_px > 0, rotation_deg, tilt_deg and brushing >= 0 required")
        return self


def hard_params(**given: str | float | None) -> HardParams | None:
    """HardParams from CLI values ("MIN,MAX" strings for ranges, floats); None if none is given."""
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return None
    out = {}
    for name, value in given.items():
        if isinstance(value, str):
            try:
                lo, hi = (float(x) for x in value.split(","))
            except ValueError:
                raise AnodetError(f"hard suite: {name} must be MIN,MAX (two numbers), got {value!r}") from None
            value = (lo, hi)
        out[name] = value
    return HardParams(**out).check()


def _rounded_rect(px, py, a, b, r):
    qx, qy = np.abs(px) - (a - r), np.abs(py) - (b - r)
    return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - r


@lru_cache(maxsize=8)
def _bracket(size: int, brushing: float) -> dict[str, np.ndarray]:
    """The defect-free bracket in canonical pose (coordinates in image widths) and the table."""
    s = size
    rng = np.random.default_rng(4321)  # the same product every time
    c = (s - 1) / 2
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    px, py = (xx - c) / s, (yy - c) / s
    sdf = _rounded_rect(px, py, 0.36, 0.22, 0.03)
    alpha = np.clip(0.5 - sdf * s, 0, 1)
    height = 0.005 * ramp(-sdf / 0.006)
    rib = (py < -0.15) & (sdf < 0)
    height = height + 0.012 * ramp((-0.155 - py) / 0.01) * (sdf < -0.004)
    holes = np.full_like(px, 10.0)  # distance to the nearest hole's rim, in rim radii
    for hx in (-0.22, 0.22):  # slots: stadiums 0.08 long
        d = np.hypot(np.maximum(np.abs(px - hx) - 0.04, 0), py - 0.05) / 0.025
        holes = np.minimum(holes, d)
    holes = np.minimum(holes, np.hypot(px, py - 0.05) / 0.035)
    through = ramp((1 - holes) * 6)
    height = height * (1 - through)
    alpha = alpha * (1 - through)
    # Brushed metal: long streaks along x, and fine grain lines a pixel wide, as real brushing leaves.
    streak = cv2.blur(rng.standard_normal((s, s)).astype(np.float32), (max(3, s // 5), 1))
    grain = cv2.blur(rng.standard_normal((s, s)).astype(np.float32), (max(3, s // 10), 1))
    streak /= streak.std() + 1e-8
    grain /= grain.std() + 1e-8
    albedo = np.array([0.56, 0.58, 0.61], np.float32) * (1 + brushing * (0.6 * streak + 0.6 * grain))[..., None]
    albedo = np.where(rib[..., None], albedo * 0.92, albedo)
    etch = (px > -0.10) & (px < 0.10) & (py > 0.13) & (py < 0.17)  # laser-etched serial field
    code = rng.random((8, 40)) < 0.5
    cell = cv2.resize(code.astype(np.uint8), (int(0.20 * s) + 1, int(0.04 * s) + 1), interpolation=cv2.INTER_NEAREST)
    ys, xs = np.nonzero(etch)
    dark = cell[np.clip(ys - ys.min(), 0, cell.shape[0] - 1), np.clip(xs - xs.min(), 0, cell.shape[1] - 1)] > 0
    albedo[ys[dark], xs[dark]] *= 0.45
    bg = np.array([0.22, 0.24, 0.26], np.float32) * (1 + 0.06 * smooth_noise(rng, (s, s), s * 0.02))[..., None]
    keep_off = cv2.dilate((holes < 1.3).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    plate = (sdf < -0.03) & (py > -0.13) & ~keep_off & ~etch  # flat plate, away from rib, holes, serial
    edge = (sdf > -0.012) & (sdf < 0.0) & (py > -0.12)  # the plate's outer edge, where chips break off
    plane = PLANE_Z + 0.015 * (yy - c) * PLANE_Z / sensors.focal_length(s)
    f32 = np.float32
    out = {"alpha": alpha.astype(f32), "height": height.astype(f32), "albedo": albedo.astype(f32),
           "bg": bg.astype(f32), "plate": plate, "edge": edge, "part": sdf < 0, "plane": plane.astype(f32)}
    for v in out.values():
        v.setflags(write=False)  # cached: callers must copy
    return out


def _pick(rng: np.random.Generator, where: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(where)
    i = rng.integers(len(xs))
    return np.array([xs[i], ys[i]], np.float64)


def _defect(rng: np.random.Generator, s: int, kind: str, part: dict, p: HardParams):
    """Canonical-pose defect: (albedo gain S x S, height delta S x S metres, mask S x S float)."""
    k = s / 256
    gain = np.ones((s, s), np.float32)
    dh = np.zeros((s, s), np.float32)
    if kind == "dent":
        r = rng.uniform(*p.dent_radius_px, 2) * k
        e = ellipse(s, _pick(rng, part["plate"]), r, rng.uniform(0, np.pi))
        w = np.clip(1 - e**2, 0, 1) ** 2
        dh = -rng.uniform(*p.dent_depth_mm) / 1000 * w
        mask = w > 0.25  # where the dent is at least a quarter of its depth
    elif kind == "scratch":
        ink = np.zeros((s, s), np.uint8)
        length = rng.uniform(*p.scratch_length_px) * k
        start = _pick(rng, part["plate"])
        angle = rng.uniform(-20, 20) * np.pi / 180 + (np.pi if rng.random() < 0.5 else 0)
        steps = 4
        pts, a = [start], angle
        for _ in range(steps):
            a += rng.uniform(-0.08, 0.08)
            pts.append(pts[-1] + length / steps * np.array([np.cos(a), np.sin(a)]))
        width = max(1, round(p.scratch_width_px * k))
        cv2.polylines(ink, [np.round(np.array(pts)).astype(np.int32)], False, 255, width, cv2.LINE_AA)
        line = ink.astype(np.float32) / 255 * (part["plate"] | part["part"])
        contrast = rng.uniform(*p.scratch_contrast) * (1 if rng.random() < 0.5 else -1)
        gain = 1 + contrast * line
        mask = cv2.dilate((line > 0.25).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    elif kind == "chip":
        centre = _pick(rng, part["edge"])
        e = ellipse(s, centre, rng.uniform(*p.chip_radius_px, 2) * k, rng.uniform(0, np.pi))
        e = e + 0.2 * smooth_noise(rng, (s, s), 1.5 * k)
        blob = np.clip((1 - e) / 0.15, 0, 1) * part["part"]
        dh = -rng.uniform(0.002, 0.004) * blob
        gain = 1 + 0.35 * blob  # bare metal of the fracture is brighter than the finish
        mask = blob > 0.5
    else:
        raise AnodetError(f"unknown hard defect type {kind!r}; valid: {', '.join(HARD_DEFECT_TYPES)} or None")
    return gain.astype(np.float32), dh.astype(np.float32), mask.astype(np.float32)


def make_hard_frame(rng: np.random.Generator, size: int = 256, defect: str | None = None,
                    sensor: str = HARD_SENSOR, params: HardParams | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one hard-suite frame: rgb uint8 S x S x 3, depth float32 S x S metres (0 = missing), mask bool.

    ``defect``: None (or "good") or one of HARD_DEFECT_TYPES; ``sensor``: anodet.data.sensor.SENSOR_NAMES.
    """
    p = (params or HardParams()).check()
    defect = None if defect == "good" else defect
    if defect is not None and defect not in HARD_DEFECT_TYPES:
        raise AnodetError(f"unknown hard defect type {defect!r}; valid: {', '.join(HARD_DEFECT_TYPES)} or None")
    if size < 64:
        raise AnodetError(f"hard-suite frames need size >= 64, got {size}")
    sensors.check_sensor(sensor)
    s, k = size, size / 256
    part = _bracket(s, p.brushing)
    nuis = np.random.default_rng(rng.integers(2**63))
    dfx = np.random.default_rng(rng.integers(2**63))
    theta = nuis.uniform(-p.rotation_deg, p.rotation_deg)
    m = cv2.getRotationMatrix2D(((s - 1) / 2, (s - 1) / 2), theta, 1.0)
    m[:, 2] += nuis.uniform(-5, 5, 2) * k
    tilt = np.tan(np.radians(nuis.uniform(-p.tilt_deg, p.tilt_deg, 2)))
    gain, gamma = nuis.uniform(0.85, 1.15), nuis.uniform(0.9, 1.1)
    white = nuis.uniform(0.98, 1.02, 3).astype(np.float32)
    z_shift = nuis.uniform(-0.001, 0.001)
    rgb_noise = nuis.normal(0, 2.0, (s, s, 3)).astype(np.float32)
    if defect is None:
        d_gain, d_h, d_mask = np.ones((s, s), np.float32), np.zeros((s, s), np.float32), np.zeros((s, s), np.float32)
    else:
        for _ in range(20):
            d_gain, d_h, d_mask = _defect(dfx, s, defect, part, p)
            if d_mask.any():
                break
    layers = np.dstack([part["albedo"], part["height"], part["alpha"], d_gain, d_h, d_mask]).astype(np.float32)
    w = cv2.warpAffine(layers, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    albedo, height, alpha = w[..., :3], w[..., 3], w[..., 4]
    d_gain = np.where(w[..., 4] > 0, w[..., 5], 1.0)
    d_h, mask = w[..., 6], (w[..., 7] > 0.5) & (alpha > 0.5)
    pitch = PLANE_Z / sensors.focal_length(s)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    ramp_m = (tilt[0] * (xx - s / 2) + tilt[1] * (yy - s / 2)) * pitch  # the tilted part's own slope
    lift = (0.0015 + ramp_m) * (alpha > 0.01)  # resting on a 1.5 mm chip under one side
    nominal = height + lift * np.clip(alpha * 4, 0, 1)
    gy, gx = np.gradient(height + ramp_m * alpha, pitch)  # shading: nominal shape (dents do not catch light)
    normal = np.dstack([-gx, -gy, np.ones_like(gx)])
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    ndotl = np.clip(normal @ _LIGHT, 0, 1).astype(np.float32)
    # Brushed metal: diffuse plus a broad sheen that varies with the rotation of the part.
    sheen = 0.15 * (1 + np.cos(2 * np.radians(theta) + 0.6 * (xx / s - 0.5))) * alpha
    shade = 0.3 + 0.7 * ndotl + sheen
    shift = m.copy()
    shift[:, 2] += 6 * k
    shadow = cv2.GaussianBlur(cv2.warpAffine(np.ascontiguousarray(part["alpha"]), shift, (s, s)), (0, 0), 3 * k)
    bg = part["bg"] * (1 - 0.4 * shadow)[..., None]
    part_albedo = albedo * d_gain[..., None]
    colour = (alpha[..., None] * part_albedo + (1 - alpha[..., None]) * bg) * shade[..., None]
    colour = np.clip(colour * gain * white, 0, 1) ** gamma * 255 + rgb_noise
    rgb = np.clip(colour + 0.5, 0, 255).astype(np.uint8)
    surface = nominal + d_h
    clean = part["plane"] + z_shift - surface
    if sensor == "ideal":
        return rgb, sensors.ideal_depth(nuis, clean, surface, pitch), mask
    sens = np.random.default_rng(nuis.integers(2**63))
    depth = sensors.sensor_depth(sens, clean, surface, pitch, sensors.focal_length(s), sensors.SENSORS[sensor])
    return rgb, depth, mask
