"""Saved anomalies: the overlay, the frame and its depth for every anomalous frame. Torch-free.

Every file is complete when write returns, so a stopped process loses nothing written.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from anodet.errors import AnodetError
from anodet.outputs import check_output_dir, describe_os_error
from anodet.runtime.frames import Frame, FrameResult
from anodet.runtime.sinks.video import draw_overlay


def _safe_stem(frame: Frame) -> str:
    stem = Path(frame.name).stem if "/" in frame.name or "." in frame.name else frame.name
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:60]


class SaveAnomaliesSink:
    """For each anomalous frame: ``NNNNNN_<name>_overlay.png``, ``_rgb.png`` and ``_depth.npy``
    (float32 metres at camera resolution) in ``directory``, created at the first anomaly."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        check_output_dir(self.dir, "anomalies folder")
        self.saved = 0

    def write(self, frame: Frame, result: FrameResult) -> None:
        if not result.anomalous:
            return
        base = str(self.dir / f"{frame.index:06d}_{_safe_stem(frame)}")
        overlay = draw_overlay(frame.rgb, result.anomaly_map, result.mask, result.score)
        target = base
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            for suffix, img in (("_overlay.png", overlay), ("_rgb.png", frame.rgb)):
                target = base + suffix
                if not cv2.imwrite(target, cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
                    raise OSError(0, "OpenCV could not write the image")
            if frame.depth is not None:
                target = base + "_depth.npy"
                np.save(target, frame.depth)
        except (OSError, cv2.error) as exc:
            Path(target).unlink(missing_ok=True)  # no half-written file among the complete ones
            reason = describe_os_error(exc) if isinstance(exc, OSError) else str(exc).strip()
            raise AnodetError(
                f"writing {target} failed after {self.saved} saved anomalies ({reason})"
            ) from None
        self.saved += 1

    def close(self) -> None:
        """Nothing is held open: every file is complete when write returns."""
