"""Defect regions: the connected components of a frame's mask, in camera pixels. Torch-free.

A PLC or a robot needs *where* and *how big*, not a heat map: each region's area, bounding
box, centroid and peak score, in the coordinates of the frame the camera delivered (the model
sees a square S x S resize of it, so x and y scale separately).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

MAX_REGIONS = 32  # largest first; a frame with more is reported as truncated (see regions_record)


@dataclass(frozen=True)
class Region:
    """One connected defect region. Coordinates in frame pixels (x right, y down)."""

    area_px: int  # in frame pixels (model-resolution area scaled by the resize)
    bbox: tuple[int, int, int, int]  # x, y, width, height
    centroid: tuple[float, float]  # x, y
    peak_score: float  # highest normalised map value inside the region (0.5 = image threshold)


def find_regions(
    mask: np.ndarray, anomaly_map: np.ndarray, frame_shape: tuple[int, int] | None = None,
    *, min_area: int = 1,
) -> list[Region]:
    """Connected components (8-neighbour) of ``mask``, largest first.

    mask uint8/bool S x S (non-zero = defective); anomaly_map float S x S, same size;
    frame_shape (H, W) of the camera frame to scale to (None: stay at model resolution).
    Components smaller than ``min_area`` model pixels are dropped.
    """
    binary = (np.asarray(mask) > 0).astype(np.uint8)
    if not binary.any():
        return []
    h, w = binary.shape
    fh, fw = frame_shape if frame_shape is not None else (h, w)
    sx, sy = fw / w, fh / h
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(binary, connectivity=8)
    amap = np.asarray(anomaly_map, dtype=np.float32)
    found = []
    for k in range(1, count):  # label 0 is the background
        x, y, bw, bh, area = (int(v) for v in stats[k])
        if area < min_area:
            continue
        peak = float(amap[y : y + bh, x : x + bw][labels[y : y + bh, x : x + bw] == k].max())
        found.append(Region(
            area_px=round(area * sx * sy),
            bbox=(int(x * sx), int(y * sy), max(1, round(bw * sx)), max(1, round(bh * sy))),
            # pixel-index coordinates: a pixel's centre is (i + 0.5) * scale - 0.5 in the frame
            centroid=(round((centroids[k][0] + 0.5) * sx - 0.5, 1), round((centroids[k][1] + 0.5) * sy - 0.5, 1)),
            peak_score=round(peak, 6),
        ))
    found.sort(key=lambda r: -r.area_px)
    return found


def regions_record(regions: list[Region]) -> dict:
    """The JSON fields of an event: the regions (largest MAX_REGIONS) and how many there were."""
    return {"regions": [asdict(r) for r in regions[:MAX_REGIONS]], "region_count": len(regions)}
