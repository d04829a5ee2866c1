"""Torch-free frame preprocessing, shared by training, evaluation and the runtime.

Everything that happens to a camera frame before the exported graph lives here, so what the
camera sees at run time is processed exactly as in training. The graph itself takes
``rgb`` uint8 H x W x 3 (RGB order) and ``depth`` float32 H x W in metres (0 = missing)
at the model's input size; normalisation happens inside the graph.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import tifffile

from anodet.errors import AnodetError
from anodet.relief import local_relief

RGB_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
DEPTH_SUFFIXES = (".tiff", ".tif", ".png", ".npy")
# Farther than any RGB-D sensor measures (RealSense z16 at 1 mm units tops out at 65.5 m):
# larger values are sensor fill values or the wrong unit, never a surface.
MAX_DEPTH_M = 100.0


@dataclass(frozen=True)
class PreprocessSpec:
    """The recipe applied before the graph; stored in the checkpoint and the ONNX metadata.

    Produced by ``anodet.config.DataConfig.preprocess``, which holds the defaults.
    """

    image_size: int
    fill_holes: bool = True
    remove_plane: bool = False
    depth_sigma: float = 0.0  # Gaussian low-pass of depth, sigma in model-input pixels; 0 = off
    depth_relief_sigma: float = 0.0  # local relief: depth minus a Gaussian-weighted fit (sigma, model px); 0 = off
    depth_relief_step: float = 0.0  # robust relief fit: steps much taller than this (metres) don't bend it; 0 = plain

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PreprocessSpec:
        # Keys absent from older artifacts take the defaults above, which is what those ran.
        keys = ("image_size", "fill_holes", "remove_plane", "depth_sigma", "depth_relief_sigma", "depth_relief_step")
        return cls(**{k: raw[k] for k in keys if k in raw})


def load_rgb(path: str | Path) -> np.ndarray:
    """Read a colour image as uint8 H x W x 3 in RGB order."""
    path = Path(path)
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise AnodetError(f"cannot read RGB image {path} (missing or corrupt)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def load_depth(path: str | Path, *, strict: bool = False) -> np.ndarray:
    """Read depth as float32 H x W in metres, 0 where missing.

    Accepts an MVTec 3D-AD organized point cloud (``.tiff`` H x W x 3, z channel used),
    a single-channel ``.tiff``/``.npy`` in metres, or a 16-bit ``.png`` in millimetres.
    Impossible pixels (see ``to_depth``) count as missing, or refuse the map when ``strict``;
    a map with no valid pixel is refused.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".tiff", ".tif"):
            raw = tifffile.imread(str(path))
        elif suffix == ".npy":
            raw = np.load(str(path), allow_pickle=False)
        elif suffix == ".png":
            raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if raw is None:
                raise ValueError("unreadable")
            if raw.dtype != np.uint16 or raw.ndim != 2:
                raise AnodetError(
                    f"depth PNG {path} must be single-channel 16-bit (millimetres), "
                    f"got {raw.dtype} with shape {raw.shape}"
                )
            raw = raw.astype(np.float32) / 1000.0
        else:
            raise AnodetError(
                f"unsupported depth file {path}; expected one of {', '.join(DEPTH_SUFFIXES)}"
            )
    except AnodetError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile/numpy raise many types for a damaged file
        raise AnodetError(f"cannot read depth file {path} (missing or corrupt: {exc})") from None
    return to_depth(raw, str(path), strict=strict)


def to_depth(raw: np.ndarray, name: str = "depth", *, strict: bool = False) -> np.ndarray:
    """Validate a raw depth array (H x W metres, or H x W x 3 xyz) into float32 H x W metres.

    Pixels no depth sensor produces -- NaN/inf, or beyond MAX_DEPTH_M -- are marked missing (0),
    like negative ones: an unchecked 3e38 overflows the graph's normalisation into a NaN score,
    which compares False with the threshold and passes the part as good. With ``strict`` (the
    runtime's frames) NaN/inf or out-of-range pixels make the whole frame an AnodetError instead:
    a camera marks missing depth with 0, so such values mean a broken producer.
    """
    raw = np.asarray(raw)
    if raw.ndim == 3 and raw.shape[2] == 3:
        raw = raw[:, :, 2]  # organized point cloud: depth is the z channel
    if raw.ndim != 2:
        raise AnodetError(f"{name}: depth must be H x W or an H x W x 3 point cloud, got {raw.shape}")
    if not np.issubdtype(raw.dtype, np.floating):
        raise AnodetError(f"{name}: depth must be floating point metres, got {raw.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32 becomes inf
        depth = raw.astype(np.float32, copy=True)
    finite = np.isfinite(depth)
    too_far = np.zeros_like(finite)
    np.greater(depth, MAX_DEPTH_M, out=too_far, where=finite)
    if strict and not finite.all():
        raise AnodetError(f"{name}: depth has {int((~finite).sum())} non-finite pixels (NaN/inf)")
    if strict and too_far.any():
        raise AnodetError(
            f"{name}: depth has {int(too_far.sum())} pixels beyond {MAX_DEPTH_M:g} m "
            f"(up to {float(depth[too_far].max()):.3g} m); depth must be metres"
        )
    depth[~finite | too_far | (depth < 0)] = 0.0
    if not np.any(depth > 0):
        raise AnodetError(f"{name}: depth has no valid pixel (all missing, NaN, inf or out of range)")
    return depth


def load_mask(path: str | Path) -> np.ndarray:
    """Read a ground-truth mask as bool H x W (any non-zero pixel is defective)."""
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise AnodetError(f"cannot read mask {path} (missing or corrupt)")
    return mask > 0


def fill_holes(depth: np.ndarray) -> np.ndarray:
    """Replace missing (0) pixels by the value of the nearest valid pixel. H x W float32."""
    missing = depth <= 0
    if not missing.any():
        return depth
    # distanceTransformWithLabels labels each pixel with its nearest zero pixel of the input,
    # so passing "missing" (valid pixels are zeros) yields the nearest valid pixel exactly.
    _, labels = cv2.distanceTransformWithLabels(
        missing.astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    # Labels number the zero pixels in row-major order, starting at 1; only holes are looked up.
    out = depth.astype(np.float32, copy=True)
    out[missing] = depth[~missing][labels[missing] - 1]
    return out


def remove_plane(depth: np.ndarray, border: float = 0.1) -> np.ndarray:
    """Flatten the tilt of the background plane fitted on the image border.

    Returns depth with the fitted plane's slope removed but its centre depth kept, so values
    stay positive metres and 0 still means missing. H x W float32.
    """
    h, w = depth.shape
    bh, bw = max(1, int(h * border)), max(1, int(w * border))
    band = np.zeros_like(depth, dtype=bool)
    band[:bh], band[-bh:], band[:, :bw], band[:, -bw:] = True, True, True, True
    valid = depth > 0
    sel = band & valid
    if sel.sum() < 3:
        return depth
    ys, xs = np.nonzero(sel)
    a = np.stack([xs, ys, np.ones_like(xs)], axis=1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(a, depth[sel].astype(np.float64), rcond=None)
    yy, xx = np.mgrid[0:h, 0:w]
    tilt = coef[0] * (xx - w / 2) + coef[1] * (yy - h / 2)
    out = depth - tilt.astype(np.float32)
    return np.where(valid, np.maximum(out, 1e-6), 0.0).astype(np.float32)


def smooth_depth(depth: np.ndarray, sigma_x: float, sigma_y: float | None = None) -> np.ndarray:
    """Gaussian low-pass of the valid depth; H x W float32 metres, 0 = missing stays missing.

    Sensor noise and z16 steps (1 mm on a D435) are pixel-scale texture a backbone responds to
    as strongly as to a defect; a low-pass removes them while millimetre dents wider than a few
    pixels stay. Normalised convolution: holes neither spread nor pull their neighbours to 0.
    sigma_x, sigma_y: pixels of this image (sigma_y defaults to sigma_x).
    """
    valid = (depth > 0).astype(np.float32)
    sy = sigma_x if sigma_y is None else sigma_y
    num = cv2.GaussianBlur(depth * valid, (0, 0), sigmaX=sigma_x, sigmaY=sy)
    den = cv2.GaussianBlur(valid, (0, 0), sigmaX=sigma_x, sigmaY=sy)
    return np.where(valid > 0, num / np.maximum(den, 1e-6), 0.0).astype(np.float32)


def resize_rgb(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 H x W x 3 to size x size (area when shrinking, cubic when growing)."""
    if rgb.shape[:2] == (size, size):
        return rgb
    shrink = rgb.shape[0] > size or rgb.shape[1] > size
    interp = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    return cv2.resize(rgb, (size, size), interpolation=interp)


def resize_depth(depth: np.ndarray, size: int) -> np.ndarray:
    """Resize depth with nearest neighbour: interpolating across holes invents geometry."""
    if depth.shape == (size, size):
        return depth
    return cv2.resize(depth, (size, size), interpolation=cv2.INTER_NEAREST)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize a bool mask with nearest neighbour."""
    if mask.shape == (size, size):
        return mask
    return cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0


def prepare_frame(
    rgb: np.ndarray, depth: np.ndarray | None, spec: PreprocessSpec, *, strict: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Turn a camera-resolution frame into graph input.

    rgb: uint8 H x W x 3 (RGB order); depth: float32 H x W metres, 0 = missing, or None for
    an RGB-only model. Returns (rgb uint8 S x S x 3, depth float32 S x S metres or None).
    strict: refuse impossible depth values instead of marking them missing (see to_depth).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise AnodetError(f"rgb must be uint8 H x W x 3, got {rgb.dtype} {rgb.shape}")
    size = spec.image_size
    out_rgb = resize_rgb(rgb, size)
    if depth is None:
        return out_rgb, None
    if depth.shape != rgb.shape[:2]:
        raise AnodetError(
            f"rgb {rgb.shape[1]}x{rgb.shape[0]} and depth {depth.shape[1]}x{depth.shape[0]} "
            "differ in size; align depth to colour first"
        )
    depth = to_depth(depth, strict=strict)
    # Fill and flatten at full resolution, where the neighbourhood is most informative,
    # then resize with nearest so no depth value is invented between surfaces.
    if spec.fill_holes:
        depth = fill_holes(depth)
    if spec.remove_plane:
        depth = remove_plane(depth)
    if spec.depth_sigma > 0:  # sigma is given at model size: scale it to this frame
        h, w = depth.shape
        depth = smooth_depth(depth, spec.depth_sigma * w / size, spec.depth_sigma * h / size)
    depth = resize_depth(depth, size)
    if spec.depth_relief_sigma > 0:  # at model size: its cost no longer grows with the camera's resolution
        depth = local_relief(depth, spec.depth_relief_sigma, step_m=spec.depth_relief_step)
    return out_rgb, depth
