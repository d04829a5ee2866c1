"""Score calibration on normal images: per-position error statistics and the threshold. Torch-free.

Training calibrates a checkpoint with these functions; INT8 quantization refits the quantized
ONNX model's threshold with the same :func:`threshold` on that model's own scores, so both
follow one rule. Torch-free so that the export side needs no PyTorch for it.
"""

from __future__ import annotations

import numpy as np

ERROR_NORMS = ("none", "std", "zscore")
THRESHOLD_METHODS = ("image_quantile", "pixel_quantile")


def error_stats(err: np.ndarray, method: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Normal images' squared error N x G x h x w -> per-position (mean, std), each 1 x G x h x w.

    Normal variability is not uniform over the part: edges, holes and printing are
    reconstructed worse than flat metal in every image. Dividing the error by its spread at
    each position keeps those places from setting every image's maximum. The median spread
    is added in quadrature so positions seen to vary little on a few images are not
    amplified without bound (the median of each map group G, a modality, separately). ``zscore`` also subtracts the per-position mean. ``None`` means
    "leave as it is" (identity: mean 0, std 1).
    """
    if method not in ERROR_NORMS:
        raise ValueError(f"unknown error_norm {method!r}")
    if method == "none":
        return None, None
    err = np.asarray(err, dtype=np.float64)
    sd = err.std(axis=0, ddof=1, keepdims=True) if err.shape[0] > 1 else np.zeros_like(err[:1])
    std = np.sqrt(sd**2 + np.median(sd, axis=(0, 2, 3), keepdims=True) ** 2)
    std = np.where(std > 0, std, 1.0)  # a constant error (one image, or none varying) leaves it alone
    mean = err.mean(axis=0, keepdims=True) if method == "zscore" else None
    return (None if mean is None else mean.astype(np.float32)), std.astype(np.float32)


def threshold(raw_maps: np.ndarray, method: str, q: float) -> tuple[float, float]:
    """Threshold and scale from normal images' raw maps N x S x S.

    image_quantile: the q-quantile of the normal images' max scores (q = 1.0: no false alarm
    on these images). pixel_quantile: the q-quantile of all normal pixels. The scale maps the
    smallest normal pixel to 0 and the threshold to 0.5.
    """
    if method not in THRESHOLD_METHODS:
        raise ValueError(f"unknown threshold_method {method!r}")
    flat = np.asarray(raw_maps, dtype=np.float32).reshape(len(raw_maps), -1)
    values = flat.max(axis=1) if method == "image_quantile" else flat.ravel()
    thr = float(np.quantile(values, q))
    low = float(flat.min())
    return thr, max((thr - low) / 0.5, 1e-12)


def pixel_threshold(raw_maps: np.ndarray, fpr: float) -> float:
    """Raw pixel threshold from normal images' raw maps N x S x S: a per-pixel false-positive budget.

    The image threshold is a quantile of each image's *maximum*, so on every pixel it flags the
    blurred halo around a defect as well as the defect: masks grow many times the defect's size.
    The mask gets its own threshold instead: the (1 - fpr)-quantile of all normal pixels, so at
    most ``fpr`` of good-part pixels lie above it (on these images).
    """
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"pixel_fpr must be in (0, 1), got {fpr}")
    flat = np.asarray(raw_maps, dtype=np.float32).ravel()
    return float(np.quantile(flat, 1.0 - fpr))


def mask_level(pixel_threshold: float, peak: float, share: float) -> float:
    """The mask's threshold in one frame (any units, the map's): above the pixel threshold and
    ``share`` of the way from it to the frame's ``peak``. The scorer's graph computes the same."""
    return pixel_threshold + share * max(peak - pixel_threshold, 0.0)
