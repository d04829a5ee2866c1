"""Checkpoint files: atomic writes and safe, validated reads.

A checkpoint is a plain dict of tensors and Python primitives, so it loads with
``torch.load(weights_only=True)``. Keys: ``format``, ``anodet_version``, ``config`` (resolved
dict), ``model`` (state dict of the whole detector), ``weights_source``, ``calibration``,
``data_fingerprint``, ``epoch``, ``best_val_loss``, ``history``, ``model_sha256`` (digest of the
weights, checked on every read: torch.load does not notice a flipped bit in tensor data) and,
in ``last.pt`` only, ``optimizer`` and ``rng``. Only ``best.pt`` holds ``calibration``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import torch

from anodet import __version__
from anodet.errors import AnodetError
from anodet.outputs import atomic_write

FORMAT = "anodet-checkpoint/1"
REQUIRED = ("config", "model")
log = logging.getLogger(__name__)


def weights_digest(model: dict[str, torch.Tensor]) -> str:
    """sha256 over a state dict's names, dtypes, shapes and raw bytes (in name order)."""
    h = hashlib.sha256()
    for name in sorted(model):
        t = model[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def write_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write atomically: a crash or kill -9 leaves the previous file intact, never half a file.

    A failed write (full disk, read-only folder) is an AnodetError naming the file.
    """
    digest = weights_digest(state["model"]) if "model" in state else None
    with atomic_write(path, "checkpoint") as tmp, open(tmp, "wb") as fh:
        torch.save({"format": FORMAT, "anodet_version": __version__, "model_sha256": digest, **state}, fh)
        fh.flush()
        os.fsync(fh.fileno())


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint; AnodetError names the file when anything is wrong."""
    path = Path(path)
    if not path.is_file():
        raise AnodetError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to load means a damaged file
        raise AnodetError(f"checkpoint {path} is corrupt or not a checkpoint ({exc.__class__.__name__})") from None
    fmt = ckpt.get("format") if isinstance(ckpt, dict) else None
    if isinstance(fmt, str) and fmt.startswith("anodet-checkpoint/") and fmt != FORMAT:
        raise AnodetError(
            f"checkpoint {path} has format {fmt} (written by anodet {ckpt.get('anodet_version', '?')}); "
            f"this anodet {__version__} reads {FORMAT}: retrain, or use the anodet version that wrote it"
        )
    if fmt != FORMAT:
        raise AnodetError(f"{path} is not an anodet checkpoint")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise AnodetError(f"{path} is an anodet checkpoint without {', '.join(missing)}; it is damaged or "
                          "was not written by anodet-train")
    digest = ckpt.get("model_sha256")
    if digest is not None and weights_digest(ckpt["model"]) != digest:
        raise AnodetError(f"checkpoint {path} is damaged: its weights differ from the digest written with them")
    major = str(ckpt.get("anodet_version", "")).split(".")[0]
    if major != __version__.split(".")[0]:
        raise AnodetError(
            f"checkpoint {path} was written by anodet {ckpt.get('anodet_version')}, "
            f"this is {__version__}; retrain or use the matching anodet version"
        )
    return ckpt


def warn_if_uncalibrated(ckpt: dict[str, Any], path: Path) -> bool:
    """Log a warning for a checkpoint without a calibrated threshold (last.pt); True if so."""
    if "calibration" in ckpt:
        return False
    log.warning("%s holds no calibrated threshold (it is training state, like last.pt): decisions and "
                "image F1 use an uncalibrated threshold; use checkpoints/best.pt", path)
    return True


def check_resume(ckpt: dict[str, Any], config: dict[str, Any], path: Path) -> None:
    """AnodetError unless ``ckpt`` (last.pt) can continue training with ``config`` (resolved dict)."""
    # A different epoch budget is fine (that is how a run is extended); anything else is not.
    def comparable(raw: dict[str, Any]) -> dict[str, Any]:
        return {**raw, "train": {k: v for k, v in raw.get("train", {}).items() if k != "epochs"}}

    if comparable(ckpt.get("config", {})) != comparable(config):
        raise AnodetError(f"--resume: {path} was trained with a different config; use the same --config and options")
    if "optimizer" not in ckpt:
        raise AnodetError(f"--resume: {path} holds no optimizer state (use last.pt)")


def check_resume_data(ckpt: dict[str, Any], fingerprint: str, data: Path) -> None:
    """AnodetError when ``ckpt`` was trained on other files than ``fingerprint`` describes.

    Resuming on them would continue the old autoencoder on new data without a word.
    """
    if ckpt.get("data_fingerprint") not in (None, fingerprint):
        raise AnodetError(f"--resume: last.pt was trained on other training files than those in --data {data}; "
                          "use the same --data, or pass --new-data to continue on these")
