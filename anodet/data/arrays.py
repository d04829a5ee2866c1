"""Load a list of samples into stacked model-input arrays (the shape the graph takes)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from anodet.data.samples import Sample, load_sample
from anodet.preprocess import PreprocessSpec


def load_arrays(
    samples: Sequence[Sample], spec: PreprocessSpec, *, need_depth: bool, desc: str = "loading"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Return rgb uint8 N x S x S x 3 and depth float32 N x S x S metres (None for RGB-only)."""
    s = spec.image_size
    rgb = np.empty((len(samples), s, s, 3), np.uint8)
    depth = np.empty((len(samples), s, s), np.float32) if need_depth else None
    for i, sample in enumerate(tqdm(samples, desc=desc, unit="img", leave=False, disable=len(samples) < 8)):
        r, d, _ = load_sample(sample, spec, need_depth=need_depth)
        rgb[i] = r
        if depth is not None:
            depth[i] = d
    return rgb, depth


def fingerprint(samples: Sequence[Sample]) -> str:
    """sha256 over the training files' names and sizes: identifies the data a model saw."""
    h = hashlib.sha256()
    for s in sorted(samples, key=lambda x: str(x.rgb_path)):
        for p in (s.rgb_path, s.depth_path):
            if p is not None:
                h.update(f"{p.parent.name}/{p.name}:{p.stat().st_size};".encode())
    return h.hexdigest()
