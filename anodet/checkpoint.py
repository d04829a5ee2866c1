"""Checkpoint files: atomic writes and safe, validated reads.

A checkpoint is a plain dict of tensors and Python primitives, so it loads with
``torch.load(weights_only=True)``. Keys: ``format``, ``anodet_version``, ``config`` (resolved
dict), ``model`` (state dict of the whole detector), ``weights_source``, ``calibration``,
``data_fingerprint``, ``epoch``, ``best_val_loss``, ``history`` and, in ``last.pt`` only,
``optimizer`` and ``rng``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from anodet import __version__
from anodet.errors import AnodetError

FORMAT = "anodet-checkpoint/1"


def write_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write atomically: a crash or kill -9 leaves the previous file intact, never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save({"format": FORMAT, "anodet_version": __version__, **state}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint; AnodetError names the file when anything is wrong."""
    path = Path(path)
    if not path.is_file():
        raise AnodetError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to load means a damaged file
        raise AnodetError(f"checkpoint {path} is corrupt or not a checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise AnodetError(f"{path} is not an anodet checkpoint")
    major = str(ckpt.get("anodet_version", "")).split(".")[0]
    if major != __version__.split(".")[0]:
        raise AnodetError(
            f"checkpoint {path} was written by anodet {ckpt.get('anodet_version')}, "
            f"this is {__version__}; retrain or use the matching anodet version"
        )
    return ckpt
