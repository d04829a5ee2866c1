"""Checks that a run's output paths can be written, made before the stream starts. Torch-free.

Each check only looks (nothing is created), so a run refused for its third output leaves no
file or folder behind for the first two. ``os.access`` reports read-only file systems even to
root; writes that fail later (a full disk) are reported by the sinks themselves.
"""

from __future__ import annotations

import os
from pathlib import Path

from anodet.errors import AnodetError


def _existing_ancestor(path: Path) -> Path:
    """The nearest part of ``path``'s parent chain that exists (the folder files would go in)."""
    parent = path.parent if str(path.parent) else Path(".")
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def _check_creatable(path: Path, what: str) -> None:
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        raise AnodetError(f"{what} {path} cannot be created: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise AnodetError(
            f"{what} {path} cannot be created: {ancestor} is read-only or not writable by this user"
        )


def check_output_file(path: str | Path, what: str) -> None:
    """AnodetError unless ``path`` can be opened for writing (or created with its folders).

    what names the output in the message, e.g. "events file".
    """
    path = Path(path)
    if path.is_dir():
        raise AnodetError(f"{what} {path} is a folder; give a file path")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise AnodetError(f"{what} {path} is read-only or not writable by this user")
        return
    _check_creatable(path, what)


def check_output_dir(path: str | Path, what: str) -> None:
    """AnodetError unless ``path`` is (or can be created as) a folder this process can write."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise AnodetError(f"{what} {path} is a file, not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise AnodetError(f"{what} {path} is read-only or not writable by this user")
        return
    _check_creatable(path, what)


def describe_os_error(exc: OSError) -> str:
    """'No space left on device' rather than '[Errno 28] No space left on device: path'."""
    return exc.strerror or str(exc)
