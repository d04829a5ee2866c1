"""Frame sources for the runtime: folders, synthetic frames, RealSense cameras and recordings.

A source is iterated once (in the capture thread) and yields ``Frame`` objects. ``live``
sources (cameras, paced synthetic) may lose frames when inference is slow; playback sources
(folders, recordings, unpaced synthetic) must not. ``close()`` may be called from another
thread and makes the iteration end at the next frame. Torch-free.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from anodet.errors import AnodetError
from anodet.preprocess import DEPTH_SUFFIXES, RGB_SUFFIXES, load_depth, load_rgb
from anodet.runtime.frames import Frame, Source

logger = logging.getLogger(__name__)

SOURCE_FORMS = (
    "realsense | realsense:SERIAL (live camera)",
    "PATH.bag | PATH.db3 (RealSense recording)",
    "DIR (folder with rgb/ + depth/ or xyz/ pairs, any depth below DIR)",
    "synthetic | synthetic:N (generated frames)",
)
RECORDING_SUFFIXES = (".bag", ".db3")
NORMAL_DIRS = ("good", "normal")
SPLIT_DIRS = ("train", "validation", "val", "test")


def truth_of(image_dir: Path) -> bool | None:
    """Ground truth of the images in ``image_dir`` (an rgb/ folder) from the known layouts.

    MVTec 3D-AD ``<split>/good/rgb`` is normal and ``test/<defect type>/rgb`` anomalous; the
    folder layout's ``<split>/normal/rgb`` is normal and ``test/anomaly[/<type>]/rgb``
    anomalous. Anything else has no known truth (None). The whole absolute path is read, so
    ``--source data/widget/test`` labels its good and its defect folders alike.
    """
    parts = image_dir.resolve().parts[:-1]  # drop the rgb/ folder itself
    if len(parts) >= 2 and parts[-1] in NORMAL_DIRS and parts[-2] in SPLIT_DIRS:
        return False
    if len(parts) >= 2 and parts[-2] == "test":
        return True  # test/<defect type> or test/anomaly
    if len(parts) >= 3 and parts[-3] == "test" and parts[-2] == "anomaly":
        return True
    return None


class FolderSource:
    """Frames from image files: every ``rgb/`` folder under ``root`` with its sibling
    ``depth/`` or ``xyz/`` folder, paired by file stem (MVTec 3D-AD and the folder layout).

    A file that cannot be read, or depth with NaN/inf or out-of-range values, becomes an error
    frame (skipped and counted by the pipeline); ``truth`` comes from ``truth_of``."""

    live = False

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.description = f"folder {self.root}"
        self._closed = threading.Event()
        self.items = self._discover()
        if not self.items:
            raise AnodetError(
                f"folder {self.root} has no images in an rgb/ subfolder "
                f"({', '.join(RGB_SUFFIXES)}); expected rgb/ with depth/ or xyz/ next to it"
            )

    def _discover(self) -> list[tuple[Path, Path | None, bool | None]]:
        rgb_dirs = [self.root / "rgb"] if (self.root / "rgb").is_dir() else []
        rgb_dirs += sorted(
            p for p in self.root.rglob("rgb") if p.is_dir() and p != self.root / "rgb"
        )
        items = []
        for rgb_dir in rgb_dirs:
            depth_dir = next(
                (rgb_dir.parent / d for d in ("depth", "xyz") if (rgb_dir.parent / d).is_dir()),
                None,
            )
            depths = {}
            if depth_dir is not None:
                depths = {
                    p.stem: p
                    for p in sorted(depth_dir.iterdir())
                    if p.suffix.lower() in DEPTH_SUFFIXES
                }
            truth = truth_of(rgb_dir)
            for rgb_path in sorted(rgb_dir.iterdir()):
                if rgb_path.suffix.lower() in RGB_SUFFIXES:
                    items.append((rgb_path, depths.get(rgb_path.stem), truth))
        return items

    def close(self) -> None:
        self._closed.set()

    def __iter__(self) -> Iterator[Frame]:
        for index, (rgb_path, depth_path, truth) in enumerate(self.items):
            if self._closed.is_set():
                return
            name = rgb_path.relative_to(self.root).as_posix()
            try:
                rgb = load_rgb(rgb_path)
                depth = load_depth(depth_path, strict=True) if depth_path is not None else None
            except AnodetError as exc:  # one damaged file must not stop the stream
                yield Frame(index, time.time(), None, None, name, truth, error=str(exc))
                continue
            yield Frame(index, time.time(), rgb, depth, name, truth)


class SyntheticSource:
    """Generated RGB-D frames; a share ``defect_rate`` gets a random defect type
    (``anodet.data.synthetic.make_frame``); ``truth`` tells which.

    count None streams forever. fps paces the frames like a camera and makes the source live
    (frames may then be dropped); without fps it behaves like playback.
    """

    def __init__(
        self,
        count: int | None = None,
        *,
        size: int = 256,
        defect_rate: float = 0.2,
        fps: float | None = None,
        seed: int = 0,
    ):
        self.count, self.size, self.defect_rate, self.fps, self.seed = (
            count,
            size,
            defect_rate,
            fps,
            seed,
        )
        self.live = fps is not None
        self.description = f"synthetic source ({'endless' if count is None else count} frames)"
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()

    def __iter__(self) -> Iterator[Frame]:
        try:
            from anodet.data.synthetic import DEFECT_TYPES, make_frame
        except ImportError as exc:
            raise AnodetError(f"the synthetic source needs anodet.data.synthetic ({exc})") from None
        rng = np.random.default_rng(self.seed)
        next_due = time.monotonic()
        index = 0
        while (self.count is None or index < self.count) and not self._closed.is_set():
            defect = str(rng.choice(DEFECT_TYPES)) if rng.random() < self.defect_rate else None
            rgb, depth, _ = make_frame(rng, self.size, defect)
            if self.fps:
                next_due += 1.0 / self.fps
                if self._closed.wait(max(0.0, next_due - time.monotonic())):
                    return
            name = f"frame {index}" + (f" ({defect})" if defect else "")
            yield Frame(index, time.time(), rgb, depth, name, defect is not None)
            index += 1


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
        from anodet.runtime.realsense import RealSenseSource

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
        from anodet.runtime.realsense import RecordingSource

        return RecordingSource(path, filters=filters)
    if path.is_dir():
        return FolderSource(path)
    if path.exists():
        raise AnodetError(f"source '{spec}' is a file of an unknown kind; valid sources: {forms}")
    raise AnodetError(f"source '{spec}' not found; valid sources: {forms}")
