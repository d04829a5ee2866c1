"""Input checks shared by the metrics: per-image labels, scores, maps and masks. Torch-free.

Images may differ in size: maps are a list of N float H_i x W_i arrays (or an N x H x W
array), masks a list of N bool H_i x W_i arrays (None where unknown).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from anodet.errors import AnodetError

Maps = Sequence[np.ndarray] | np.ndarray
Masks = Sequence[np.ndarray | None] | np.ndarray


def as_vector(values: Any, name: str) -> np.ndarray:
    """Finite float64 vector (N,) of ``values``; AnodetError naming ``name`` otherwise."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size and not np.all(np.isfinite(arr)):
        raise AnodetError(f"{name} contain NaN or infinite values; pass finite numbers")
    return arr


def as_labels(labels: Any) -> np.ndarray:
    """Bool vector (N,) from 0/1 or boolean labels, 1 = anomalous."""
    arr = np.asarray(labels).reshape(-1)
    if arr.dtype != bool and not np.all(np.isin(arr, (0, 1))):
        raise AnodetError("labels must be 0 (normal) or 1 (anomalous), or booleans")
    return arr.astype(bool)


def as_maps(maps: Maps) -> list[np.ndarray]:
    """The maps as a list of finite H_i x W_i arrays."""
    out = []
    for i, m in enumerate(maps):
        m = np.asarray(m)
        if m.ndim != 2:
            raise AnodetError(f"anomaly map {i} has shape {m.shape}; expected H x W")
        if not np.all(np.isfinite(m)):
            raise AnodetError(f"anomaly map {i} contains NaN or infinite values")
        out.append(m)
    return out


def as_masks(masks: Masks, maps: list[np.ndarray]) -> list[np.ndarray]:
    """One bool mask per map, each of its map's shape; None masks are refused."""
    masks = list(masks)
    if len(masks) != len(maps):
        raise AnodetError(f"got {len(masks)} masks for {len(maps)} anomaly maps; need one each")
    out = []
    for i, (mask, amap) in enumerate(zip(masks, maps)):
        if mask is None:
            raise AnodetError(
                f"mask {i} is None; pixel metrics need a ground-truth mask for every image "
                "(evaluate() skips them instead)"
            )
        mask = np.asarray(mask)
        if mask.shape != amap.shape:
            raise AnodetError(f"mask {i} has shape {mask.shape} but its map has {amap.shape}")
        out.append(mask.astype(bool))
    return out


def check_pair(labels: np.ndarray, scores: np.ndarray) -> None:
    """Refuse labels and scores of different lengths."""
    if labels.shape != scores.shape:
        raise AnodetError(f"got {labels.size} labels for {scores.size} scores; need one each")
