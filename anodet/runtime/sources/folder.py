"""Frames from image folders (MVTec 3D-AD and the folder layout), with their known truth.

Playback: never live, so every file is judged. Torch-free.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

from anodet.errors import AnodetError
from anodet.preprocess import DEPTH_SUFFIXES, RGB_SUFFIXES, load_depth, load_rgb
from anodet.runtime.frames import Frame

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
