"""Load a list of samples into stacked model-input arrays (the shape the graph takes)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from anodet.data.samples import Sample, load_sample
from anodet.data.sensor import requantise
from anodet.preprocess import PreprocessSpec
from anodet.progress import progress_bar


def load_arrays(
    samples: Sequence[Sample], spec: PreprocessSpec, *, need_depth: bool, desc: str = "loading",
    depth_units: Sequence[float] = (), seed: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Return rgb uint8 M x S x S x 3 and depth float32 M x S x S metres (None for RGB-only).

    M = N: the samples as stored. With ``depth_units`` (metres), every sample is added once
    more per unit with its raw depth re-rounded to that z16 step (``requantise``), before the
    preprocessing, so M = N x (1 + len(depth_units)): the copies follow the originals.
    """
    s = spec.image_size
    units = list(depth_units) if need_depth else []
    rng = np.random.default_rng(seed)
    jobs = [(sample, None) for sample in samples] + [(sample, u) for u in units for sample in samples]
    rgb = np.empty((len(jobs), s, s, 3), np.uint8)
    depth = np.empty((len(jobs), s, s), np.float32) if need_depth else None
    for i, (sample, unit) in enumerate(progress_bar(jobs, desc=desc, unit="img", leave=False, disable=len(jobs) < 8)):
        step = None if unit is None else (lambda d, u=unit: requantise(d, u, rng))
        r, d, _ = load_sample(sample, spec, need_depth=need_depth, depth_transform=step)
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
