"""The ``--source`` strings and open_source, which turns one into a source. Torch-free.

A source is iterated once (in the capture thread) and yields ``Frame`` objects. ``live``
sources (cameras, paced synthetic) may lose frames when inference is slow; playback sources
(folders, recordings, unpaced synthetic) must not. ``close()`` may be called from another
thread and makes the iteration end at the next frame. pyrealsense2 loads only for a camera or
a recording.
"""

from __future__ import annotations

from pathlib import Path

from anodet.errors import AnodetError
from anodet.runtime.frames import Source
from anodet.runtime.sources.folder import FolderSource
from anodet.runtime.sources.synthetic import SyntheticSource

SOURCE_FORMS = (
    "realsense | realsense:SERIAL (live camera)",
    "PATH.bag | PATH.db3 (RealSense recording)",
    "DIR (folder with rgb/ + depth/ or xyz/ pairs, any depth below DIR)",
    "synthetic | synthetic:N (generated frames)",
)
RECORDING_SUFFIXES = (".bag", ".db3")


def open_source(
    spec: str,
    *,
    fps: float | None = None,
    width: int = 640,
    height: int = 480,
    filters: tuple[str, ...] = (),
    synthetic_size: int = 256,
    give_up_after: float = 30.0,
) -> Source:
    """Open a source from a ``--source`` string; see SOURCE_FORMS.

    fps/width/height configure a live camera (fps also paces the synthetic source); filters
    names RealSense post-processing filters (spatial, temporal, hole_filling); give_up_after is
    how long (s) an unplugged camera may take to come back before the run fails.
    """
    forms = "; ".join(SOURCE_FORMS)
    if spec == "realsense" or spec.startswith("realsense:"):
        from anodet.runtime.sources.realsense import RealSenseSource

        serial = spec.partition(":")[2] or None
        return RealSenseSource(
            serial,
            width=width,
            height=height,
            fps=int(fps or 30),
            filters=filters,
            give_up_after=give_up_after,
        )
    if spec == "synthetic" or spec.startswith("synthetic:"):
        count = spec.partition(":")[2]
        if count and not (count.isdigit() and int(count) > 0):
            raise AnodetError(f"source '{spec}': N in synthetic:N must be a positive integer")
        return SyntheticSource(int(count) if count else None, size=synthetic_size, fps=fps)
    path = Path(spec)
    if path.suffix.lower() in RECORDING_SUFFIXES:
        if not path.is_file():
            raise AnodetError(f"recording {path} not found")
        from anodet.runtime.sources.playback_process import (
            IsolatedRecording,  # SDK crashes stay in a child
        )

        return IsolatedRecording(path, filters=filters)
    if path.is_dir():
        return FolderSource(path)
    if path.exists():
        raise AnodetError(f"source '{spec}' is a file of an unknown kind; valid sources: {forms}")
    raise AnodetError(f"source '{spec}' not found; valid sources: {forms}")
