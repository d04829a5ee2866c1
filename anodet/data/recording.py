"""A RealSense recording of good parts as a training set: ``anodet-train --data REC.db3``.

The recording is played once through the runtime's RecordingSource (depth aligned to colour,
in metres, exactly the frames ``anodet-run`` would see) and written by ``anodet.capture`` into
a folder-layout dataset with only ``train/normal``; ``discover`` then holds out validation
images as for any folder. Depth is stored as float32 ``.tiff`` metres, so nothing is rounded.

The folder is a cache, keyed by the recording's resolved path, size and modification time:
``$ANODET_CACHE/recordings/<stem>-<key>/`` (default ``~/.cache/anodet``). It is built under a
temporary name and renamed when complete, so an interrupted extraction is never reused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

from anodet.errors import AnodetError, CaptureError

logger = logging.getLogger(__name__)

RECORDING_SUFFIXES = (".db3", ".bag")
_LAYOUT_VERSION = "1"  # bump when the extracted layout changes, so old caches are not reused


def is_recording(path: str | Path) -> bool:
    """True for an existing ``.db3``/``.bag`` file."""
    path = Path(path)
    return path.suffix.lower() in RECORDING_SUFFIXES and path.is_file()


def cache_root() -> Path:
    """Where extracted recordings live: ``$ANODET_CACHE`` or ``~/.cache/anodet``."""
    return Path(os.environ.get("ANODET_CACHE") or Path.home() / ".cache" / "anodet") / "recordings"


def _key(path: Path) -> str:
    st = path.stat()
    ident = f"{_LAYOUT_VERSION}:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    return hashlib.sha256(ident.encode()).hexdigest()[:12]


def recording_dataset(path: str | Path, *, progress: bool = True) -> Path:
    """Folder-layout dataset (``train/normal`` only) with every frame of the recording ``path``.

    Reuses a complete earlier extraction of the same unchanged file. Raises AnodetError for a
    recording that cannot be played or lacks colour or depth, and when frames were lost.
    """
    from anodet.capture import capture, open_capture_source

    path = Path(path)
    final = cache_root() / f"{path.stem}-{_key(path)}"
    if (final / "capture.json").is_file():
        logger.info("recording %s: using its frames extracted earlier to %s", path, final)
        return final
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # our own leftover from a crashed run of this process id
    try:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            res = capture(open_capture_source(str(path)), tmp, "train/normal", depth_format="tiff",
                          progress=progress)
        except CaptureError as exc:  # its "kept in <folder>" names the folder removed below
            cause = exc.failure.replace(f"{tmp}{os.sep}", "")  # paths inside that folder: relative
            raise AnodetError(f"cannot extract recording {path} into {final.parent}: {cause}; nothing "
                              "was cached (the partial extraction was removed)") from None
        if res.lost:
            raise AnodetError(f"recording {path}: the SDK did not deliver {res.lost} recorded "
                              "frames; training from a partial recording is refused")
        if not res.written:
            raise AnodetError(f"recording {path} holds no colour and depth frames")
        os.replace(tmp, final)
    except OSError as exc:
        raise AnodetError(
            f"cannot extract recording {path} into {final.parent} ({exc.strerror or exc}); "
            "set ANODET_CACHE to a writable folder") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("recording %s: %d frames extracted to %s (%d skipped)", path, res.written, final,
                res.skipped)
    return final
