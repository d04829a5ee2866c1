"""Output files of every command: checks before long work starts, atomic publication, one mode rule.

Each check only looks (nothing is created), so a run refused for its third output leaves no
file or folder behind for the first two. ``os.access`` reports read-only file systems even to
root; writes that fail later (a full disk) are reported by the writers themselves.

Large outputs (checkpoints, ONNX models) are written to ``<name>.<random>.tmp`` beside the
target and renamed into place, so a kill leaves the previous file intact; the orphaned
temporary file is removed by the next write of the same target. Every output gets the mode a
plain ``open()`` would give it (0666 minus the umask), whichever library wrote it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it; set straight back
    os.umask(mask)
    return mask


def remove_orphans(path: Path) -> None:
    """Delete ``<path name>.*.tmp`` files and folders beside ``path``: left by a killed write."""
    for orphan in path.parent.glob(f"{path.name}.*.tmp"):
        if orphan.is_dir() and not orphan.is_symlink():
            shutil.rmtree(orphan, ignore_errors=True)
        else:
            orphan.unlink(missing_ok=True)


def temp_beside(path: Path) -> Path:
    """A new empty temporary file next to ``path`` (same file system, so renaming is atomic).

    Orphans of earlier killed writes to ``path`` are removed first.
    """
    remove_orphans(path)
    fd, name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


def publish(tmp: Path, path: Path) -> None:
    """Give ``tmp`` the standard file mode and rename it to ``path`` (atomically replacing it)."""
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600
    os.replace(tmp, path)


@contextmanager
def atomic_write(path: Path, what: str) -> Iterator[Path]:
    """Yield a temporary file beside ``path``; publish it there when the block succeeds.

    The block writes the temporary file. An OSError (full disk, read-only folder) becomes an
    AnodetError naming ``what`` and ``path``; any failure removes the temporary file and leaves
    an existing ``path`` unchanged.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_beside(path)
        yield tmp
        publish(tmp, path)
    except OSError as exc:
        raise AnodetError(f"writing {what} {path} failed ({describe_os_error(exc)}); "
                          "the previous file, if any, is unchanged") from None
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()
