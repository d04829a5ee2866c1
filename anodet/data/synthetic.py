"""Synthetic RGB-D dataset in MVTec 3D-AD layout, for tests, the demo and benchmarks.

The scene is a machined part (rounded box, 2 cm tall, with a raised boss, a 2 x 3 grid of
drilled holes, a printed barcode and ring, brushed-metal texture) on a work surface about
0.5 m from a pinhole camera. Per frame: pose jitter (a few px and degrees), lighting gain,
gamma and white balance, RGB noise, 0.5 mm depth noise, ~1 % missing-depth speckle and
dropout on steep walls. Defect types:

- ``colour``: stains and marker pen; albedo only, the depth map is bit-identical.
- ``geometry``: dents and bumps 2-5 mm deep; shading comes from the nominal shape, so the
  RGB image is bit-identical (as with a defect too shallow to see).
- ``crack``: cracks and broken holes, dark in colour and recessed in depth.

Nuisances and defects draw from separate random streams, so the same ``rng`` state gives the
same frame with or without a defect, which is what makes the claims above testable.
"""

from __future__ import annotations

import json
import shutil
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import tifffile

from anodet.data import sensor as sensors
from anodet.data.hard_parts import HARD_DEFECT_TYPES, HARD_SENSOR, HardParams, make_hard_frame
from anodet.data.shapes import ellipse, polyline, ramp, smooth_noise
from anodet.errors import AnodetError
from anodet.outputs import check_output_dir

DEFECT_TYPES = ("colour", "geometry", "crack")
TEST_TYPES = ("good", *DEFECT_TYPES)
DIFFICULTIES = ("standard", "hard")
PLANE_Z = 0.5  # metres from camera to the work surface at the image centre
PART_HEIGHT = 0.02  # metres
_MARKER = "anodet_synthetic.json"
_LIGHT = np.array([-0.35, -0.45, 0.82]) / np.linalg.norm([-0.35, -0.45, 0.82])






@lru_cache(maxsize=8)
def _part(size: int) -> dict[str, np.ndarray]:
    """The defect-free part in its canonical pose, and the fixed background.

    Coordinates are in units of the image width so the part looks the same at any size.
    """
    s = size
    rng = np.random.default_rng(1234)  # the same product every time
    c = (s - 1) / 2
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    px, py = (xx - c) / s, (yy - c) / s
    # Rounded rectangle signed distance (negative inside).
    a, b, r = 0.34, 0.26, 0.08
    qx, qy = np.abs(px) - (a - r), np.abs(py) - (b - r)
    sdf = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - r
    alpha = np.clip(0.5 - sdf * s, 0, 1)  # anti-aliased footprint
    height = PART_HEIGHT * ramp(-sdf / 0.035)
    boss = np.hypot(px + 0.15, py)
    height += 0.004 * ramp((0.10 - boss) / 0.012)
    holes = np.ones_like(px)
    for hx in (0.07, 0.16, 0.25):
        for hy in (-0.10, 0.10):
            holes = np.minimum(holes, np.hypot(px - hx, py - hy) / 0.03)
    height -= 0.006 * ramp((1 - holes) * 4)  # steep-walled holes, 6 mm deep
    # Albedo: brushed metal, a slightly brighter boss, printed ring and barcode.
    streak = cv2.blur(rng.standard_normal((s, s)).astype(np.float32), (max(3, s // 8), 1))
    streak /= streak.std() + 1e-8
    albedo = np.array([0.60, 0.62, 0.66], np.float32) * (1 + 0.05 * streak)[..., None]
    albedo = np.where((boss < 0.10)[..., None], albedo * 1.08, albedo)
    ring = (boss > 0.112) & (boss < 0.125)
    albedo[ring] = (0.75, 0.30, 0.10)
    bars = rng.integers(1, 4, size=40).cumsum() / 100.0  # stripe edges, 0.01 width units
    in_code = (px > 0.04) & (px < 0.28) & (np.abs(py) < 0.04)
    stripe = (np.searchsorted(bars, px - 0.04) % 2 == 0) & in_code
    albedo[stripe] = (0.08, 0.08, 0.10)
    # Ambient occlusion: recesses look darker, independent of the light direction.
    recess = cv2.GaussianBlur(height, (0, 0), s * 0.01) - height
    albedo *= (1 - 0.5 * np.clip(recess / 0.004, 0, 1))[..., None]
    blotches = 1 + 0.08 * smooth_noise(rng, (s, s), s * 0.03)
    bg = np.array([0.30, 0.33, 0.30], np.float32) * blotches[..., None]
    # Defects are placed well inside the top face (away from the bevel).
    interior = sdf < -0.06
    top = sdf < -0.015  # defects are clipped to the part, never spill onto the background
    # Work surface slightly tilted (camera not exactly perpendicular): slope 0.02, ~1 degree.
    plane = PLANE_Z + 0.02 * (yy - c) * PLANE_Z / sensors.focal_length(s)
    f32 = np.float32
    out = {"alpha": alpha.astype(f32), "height": height.astype(f32), "albedo": albedo.astype(f32),
           "bg": bg.astype(f32), "interior": interior, "top": top, "plane": plane.astype(f32)}
    for v in out.values():
        v.setflags(write=False)  # cached: callers must copy
    return out






def _defect(rng: np.random.Generator, s: int, kind: str, interior: np.ndarray, top: np.ndarray):
    """Canonical-pose defect centred in ``interior``, clipped to ``top``.

    Returns (albedo colour (3,), albedo alpha S x S, height delta S x S metres, mask float S x S).
    """
    k = s / 256  # sizes below are given at 256 px
    colour = np.zeros(3, np.float32)
    alpha = np.zeros((s, s), np.float32)
    dh = np.zeros((s, s), np.float32)
    ys, xs = np.nonzero(interior)
    i = rng.integers(len(xs))
    centre = np.array([xs[i], ys[i]], np.float64)
    if kind == "colour" and rng.random() < 0.6:  # stain: irregular soft blob
        e = ellipse(s, centre, rng.uniform(8, 22, 2) * k, rng.uniform(0, np.pi))
        e = e + 0.3 * smooth_noise(rng, (s, s), 4 * k)
        strength = rng.uniform(0.45, 0.8)
        alpha = np.clip((1 - e) / 0.3, 0, 1) * strength
        palette = [(0.55, 0.30, 0.12), (0.16, 0.15, 0.13), (0.95, 0.93, 0.85), (0.35, 0.55, 0.40)]
        colour[:] = palette[rng.integers(len(palette))]
        mask = alpha >= 0.3
    elif kind == "colour":  # marker-pen scribble
        ink = np.zeros((s, s), np.uint8)
        pts = polyline(rng, centre, int(rng.integers(2, 5)), 10 * k, 1.2)
        cv2.polylines(ink, [pts], False, 255, max(1, round(rng.uniform(4, 8) * k)))
        alpha = cv2.GaussianBlur(ink.astype(np.float32) / 255, (0, 0), 0.6) * 0.9
        palette = [(0.75, 0.10, 0.10), (0.10, 0.20, 0.70), (0.05, 0.05, 0.05)]
        colour[:] = palette[rng.integers(len(palette))]
        mask = ink > 0
    elif kind == "geometry":  # one or two dents / bumps with a smooth profile
        for j in range(int(rng.integers(1, 3))):
            c = centre if j == 0 else centre + rng.uniform(-20, 20, 2) * k
            e = ellipse(s, c, rng.uniform(10, 24, 2) * k, rng.uniform(0, np.pi))
            w = np.clip(1 - e, 0, 1) ** 2
            amp = rng.uniform(0.0025, 0.006) * (-1 if rng.random() < 0.7 else 1)
            dh += amp * w
        mask = np.abs(dh) >= 0.0008  # label what stands out of the 0.5 mm noise
    elif kind == "crack":
        ink = np.zeros((s, s), np.uint8)
        if rng.random() < 0.7:  # crack: thin branching random walk
            thick = max(1, round(rng.uniform(2.5, 5) * k))
            pts = polyline(rng, centre, int(rng.integers(5, 9)), 7 * k, 0.9)
            cv2.polylines(ink, [pts], False, 255, thick)
            b = pts[int(rng.integers(1, len(pts)))]
            cv2.polylines(ink, [polyline(rng, b, 2, 6 * k, 0.9)], False, 255, max(1, thick - 1))
            depth = rng.uniform(0.002, 0.005)
        else:  # broken-out hole with a ragged rim
            e = ellipse(s, centre, rng.uniform(6, 13, 2) * k, rng.uniform(0, np.pi))
            ink[(e + 0.25 * smooth_noise(rng, (s, s), 2 * k)) < 1] = 255
            depth = rng.uniform(0.004, 0.008)
        soft = cv2.GaussianBlur(ink.astype(np.float32) / 255, (0, 0), 0.7)
        dh = -depth * soft
        alpha = np.clip(soft * 1.2, 0, 0.9)
        colour[:] = (0.07, 0.06, 0.05)
        mask = ink > 0
    else:
        raise AnodetError(f"unknown defect type {kind!r}; valid: {', '.join(DEFECT_TYPES)} or None")
    f32 = np.float32  # one dtype, so the warp below is identical with and without a defect
    return colour, (alpha * top).astype(f32), (dh * top).astype(f32), (mask & top).astype(f32)


def make_frame(rng: np.random.Generator, size: int = 256, defect: str | None = None,
               sensor: str = "ideal") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one frame: rgb uint8 S x S x 3, depth float32 S x S metres (0 = missing), mask bool.

    ``defect`` is None (or "good") for a normal part, else one of DEFECT_TYPES; ``sensor`` is
    one of anodet.data.sensor.SENSOR_NAMES (what the depth camera does to the depth).
    """
    if defect == "good":
        defect = None
    if defect is not None and defect not in DEFECT_TYPES:
        valid = ", ".join(DEFECT_TYPES)
        raise AnodetError(f"unknown defect type {defect!r}; valid: {valid} or None")
    if size < 32:
        raise AnodetError(f"synthetic frames need size >= 32, got {size}")
    sensors.check_sensor(sensor)
    s, k = size, size / 256
    part = _part(s)
    # Two independent streams: nuisances draw the same numbers whatever the defect.
    nuis = np.random.default_rng(rng.integers(2**63))
    dfx = np.random.default_rng(rng.integers(2**63))

    theta = nuis.uniform(-4, 4)
    m = cv2.getRotationMatrix2D(((s - 1) / 2, (s - 1) / 2), theta, 1.0)
    m[:, 2] += nuis.uniform(-4, 4, 2) * k
    gain, gamma = nuis.uniform(0.8, 1.2), nuis.uniform(0.85, 1.15)
    white = nuis.uniform(0.97, 1.03, 3).astype(np.float32)
    z_shift = nuis.uniform(-0.0005, 0.0005)
    rgb_noise = nuis.normal(0, 2.0, (s, s, 3)).astype(np.float32)

    if defect is None:
        d_col, d_alpha = np.zeros(3, np.float32), np.zeros((s, s), np.float32)
        d_h, d_mask = d_alpha, d_alpha
    else:
        for _ in range(20):  # a ragged blob can vanish entirely; draw again (rare)
            d_col, d_alpha, d_h, d_mask = _defect(dfx, s, defect, part["interior"], part["top"])
            if d_mask.any():
                break

    # Warp every part layer with one call; the background stays where it is.
    layers = np.dstack([part["albedo"], part["height"], part["alpha"], d_alpha, d_h, d_mask])
    layers = layers.astype(np.float32, copy=False)
    w = cv2.warpAffine(layers, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    albedo, height, alpha = w[..., :3], w[..., 3], w[..., 4]
    d_alpha, d_h, mask = w[..., 5], w[..., 6], (w[..., 7] > 0.5) & (w[..., 4] > 0.5)

    # Shading uses the nominal shape only, so geometry defects never change the RGB image.
    pitch = PLANE_Z / sensors.focal_length(s)  # metres per pixel at the work surface
    gy, gx = np.gradient(height, pitch)
    normal = np.dstack([-gx, -gy, np.ones_like(gx)])
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    shade = 0.3 + 0.75 * np.clip(normal @ _LIGHT, 0, 1).astype(np.float32)
    # Soft drop shadow cast by the part onto the work surface (light from the upper left).
    shift = m.copy()
    shift[:, 2] += 8 * k
    shadow = cv2.GaussianBlur(cv2.warpAffine(np.ascontiguousarray(part["alpha"]), shift, (s, s)),
                              (0, 0), 4 * k)
    part_albedo = albedo * (1 - d_alpha[..., None]) + d_col * d_alpha[..., None]
    bg = part["bg"] * (1 - 0.35 * shadow)[..., None]
    colour = (alpha[..., None] * part_albedo + (1 - alpha[..., None]) * bg) * shade[..., None]
    colour = np.clip(colour * gain * white, 0, 1) ** gamma * 255 + rgb_noise
    rgb = np.clip(colour + 0.5, 0, 255).astype(np.uint8)

    surface = height + d_h
    clean = part["plane"] + z_shift - surface
    if sensor == "ideal":  # nuis draws last here, so depth is as before the sensor models
        return rgb, sensors.ideal_depth(nuis, clean, surface, pitch), mask
    sens = np.random.default_rng(nuis.integers(2**63))
    depth = sensors.sensor_depth(sens, clean, surface, pitch, sensors.focal_length(s), sensors.SENSORS[sensor])
    return rgb, depth, mask


def write_dataset(out: str | Path, *, size: int = 256, n_train: int = 60, n_val: int = 15,
                  n_test_per_type: int = 10, seed: int = 0, category: str | None = None,
                  sensor: str | None = None, replace: bool = True, difficulty: str = "standard",
                  hard: HardParams | None = None) -> Path:
    """Write a synthetic category in MVTec 3D-AD layout under ``out/<category>``; return it.

    ``difficulty``: ``standard`` (the widget, defects of DEFECT_TYPES, ideal depth by default) or
    ``hard`` (the bracket of anodet.data.hard_parts with ``hard`` parameters, D435 depth by default).

    rgb PNG, xyz float32 TIFF (metres, missing points all zero), gt PNG 0/255 for every test
    image (all zero for good ones). A previous synthetic set at that place is replaced (refused
    when ``replace`` is False); any other non-empty directory is refused. ``n_val=0`` writes no validation split. ``sensor``:
    the depth camera modelled (anodet.data.sensor.SENSOR_NAMES).
    """
    if n_train < 1 or n_val < 0 or n_test_per_type < 0:
        raise AnodetError("n_train >= 1, n_val >= 0 and n_test_per_type >= 0 required")
    if difficulty not in DIFFICULTIES:
        raise AnodetError(f"unknown difficulty {difficulty!r}; valid: {', '.join(DIFFICULTIES)}")
    if difficulty == "hard":
        hard = (hard or HardParams()).check()
        sensor = sensor or HARD_SENSOR
        types = ("good", *HARD_DEFECT_TYPES)

        def render(rng, kind):
            return make_hard_frame(rng, size, kind, sensor, hard)
    else:
        sensor, types = sensor or "ideal", TEST_TYPES

        def render(rng, kind):
            return make_frame(rng, size, kind, sensor)
    sensors.check_sensor(sensor)
    root = Path(out) / (category or ("bracket" if difficulty == "hard" else "widget"))
    check_output_dir(root, "dataset folder")  # OUT a file or read-only: one line before any work
    if root.exists() and any(root.iterdir()):
        marked = (root / _MARKER).is_file()
        if not marked or not replace:
            raise AnodetError(f"{root} exists and holds " + ("an earlier synthetic dataset; pass --force to "
                              "replace it" if marked else "other files (not a synthetic dataset); choose another OUT"))
        shutil.rmtree(root)
    jobs = [("train", "good", n_train), ("validation", "good", n_val)]
    jobs += [("test", t, n_test_per_type) for t in types]
    for job, (split, kind, n) in enumerate(jobs):
        if n == 0:
            continue
        folder = root / split / kind
        for sub in ("rgb", "xyz") + (("gt",) if split == "test" else ()):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            # One seed per image: any image can be regenerated alone, counts don't shift others.
            rng = np.random.default_rng([seed, job, i])
            rgb, depth, mask = render(rng, None if kind == "good" else kind)
            name = f"{i:03d}"
            cv2.imwrite(str(folder / "rgb" / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            # One page, 3 samples per pixel, as MVTec's files (tifffile's default will change).
            tifffile.imwrite(folder / "xyz" / f"{name}.tiff", sensors.depth_to_xyz(depth),
                             photometric="minisblack", planarconfig="contig")
            if split == "test":
                cv2.imwrite(str(folder / "gt" / f"{name}.png"), mask.astype(np.uint8) * 255)
    params = {"size": size, "n_train": n_train, "n_val": n_val,
              "n_test_per_type": n_test_per_type, "seed": seed, "test_types": list(types), "sensor": sensor,
              "difficulty": difficulty, **({"hard": hard.to_dict()} if difficulty == "hard" else {})}
    (root / _MARKER).write_text(json.dumps(params, indent=1))
    return root
