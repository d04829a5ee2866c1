"""Experiment folders, device choice and logging to the experiment folder."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from anodet.errors import AnodetError
from anodet.outputs import describe_os_error

DEVICES = ("auto", "cpu", "cuda")
# What anodet-train writes: a folder holding any of these is an earlier experiment.
EXPERIMENT_FILES = ("checkpoints", "config.yaml", "history.csv", "train.log")


def check_experiment_dir(path: Path, *, resume: bool, force: bool) -> None:
    """Refuse to train into an earlier experiment unless ``resume`` or ``force`` says so.

    Without either, best.pt, last.pt, config.yaml and history.csv would be replaced silently.
    """
    if resume and force:
        raise AnodetError("--resume and --force contradict each other: continue the experiment or replace it")
    found = [name for name in EXPERIMENT_FILES if (path / name).exists()] if path.is_dir() else []
    if found and not resume and not force:
        raise AnodetError(f"--out {path} already holds an experiment ({', '.join(found)}); pass --resume to "
                          "continue it, --force to replace it, or choose another folder")


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


def check_fresh_output(path: Path, names: tuple[str, ...], *, force: bool) -> None:
    """Refuse to write into ``path`` over any of ``names`` (an earlier run's results) unless ``force``."""
    found = [name for name in names if (path / name).exists()] if path.is_dir() else []
    if found and not force:
        raise AnodetError(f"--out {path} already holds results ({', '.join(found)}); pass --force to replace "
                          "them, or choose another folder")


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


@contextlib.contextmanager
def failed_run_cleanup(out_dir: Path, *, created: bool, keep: Path) -> Iterator[None]:
    """Name the file of an OSError (full disk, read-only folder) in an AnodetError, and on any
    failure remove ``out_dir`` when this run ``created`` it and ``keep`` does not exist yet
    (a failed run leaves no half-made folder; results already written stay)."""
    try:
        yield
    except BaseException as exc:
        if created and not keep.exists():
            shutil.rmtree(out_dir, ignore_errors=True)
        if isinstance(exc, OSError):
            raise AnodetError(f"writing {exc.filename or out_dir} failed ({describe_os_error(exc)})") from None
        raise
