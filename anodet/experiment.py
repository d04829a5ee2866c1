"""Experiment folders, device choice and logging to the experiment folder."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from anodet.errors import AnodetError

DEVICES = ("auto", "cpu", "cuda")


def prepare_out_dir(path: Path, *, allow_existing: bool = True) -> Path:
    """Create ``path`` (and parents) and prove it is writable before any long work starts."""
    if path.exists() and not path.is_dir():
        raise AnodetError(f"--out {path} exists and is not a directory")
    if path.exists() and not allow_existing and any(path.iterdir()):
        raise AnodetError(f"--out {path} is not empty; choose another folder or pass --force")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise AnodetError(f"--out {path} is not writable ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK):
        raise AnodetError(f"--out {path} is not writable")
    return path


def resolve_device(name: str):
    """'auto' -> cuda when available, else cpu. Returns a torch.device."""
    import torch

    if name not in DEVICES:
        raise AnodetError(f"unknown --device {name!r}; valid: {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise AnodetError("--device cuda: no CUDA GPU is available to PyTorch; use --device cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


@contextlib.contextmanager
def log_to(path: Path) -> Iterator[None]:
    """Copy anodet's log records into ``path`` (appending) for the duration of the block."""
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("anodet")
    root.addHandler(handler)
    old_level = root.level
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
