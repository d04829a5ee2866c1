"""Annotated frames: the heat-map overlay, the annotated video file and a window. Torch-free."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import cv2
import numpy as np

from anodet.artifact import DECISION_THRESHOLD
from anodet.errors import AnodetError
from anodet.outputs import check_output_file, describe_os_error
from anodet.runtime.frames import Frame, FrameResult


def draw_overlay(
    rgb: np.ndarray, anomaly_map: np.ndarray, mask: np.ndarray, score: float
) -> np.ndarray:
    """Heat map + mask contour + score text over a frame.

    rgb uint8 H x W x 3; anomaly_map float (any size, 0.5 = threshold); mask (any size, non-zero
    = defective). Returns uint8 H x W x 3 RGB. The map is stretched to the frame, as the model
    input was the frame squashed to a square.
    """
    h, w = rgb.shape[:2]
    heat = cv2.resize(
        np.clip(anomaly_map, 0.0, 1.0).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR
    )
    colour = cv2.cvtColor(
        cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB
    )
    # Blend more where the map is high, so normal regions stay readable.
    alpha = (0.25 + 0.45 * heat)[..., None]
    out = (rgb * (1 - alpha) + colour * alpha).astype(np.uint8)
    big_mask = cv2.resize((mask > 0).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(big_mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    thick = max(1, round(min(h, w) / 200))
    cv2.drawContours(out, contours, -1, (255, 0, 0), thick)
    anomalous = score > DECISION_THRESHOLD
    text = f"{'ANOMALY' if anomalous else 'ok'} {score:.2f}"
    scale = max(0.35, min(h, w) / 500)
    org = (max(2, w // 60), max(12, int(28 * scale)))
    cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(
        out,
        text,
        org,
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (255, 64, 64) if anomalous else (64, 255, 64),
        thick,
        cv2.LINE_AA,
    )
    return out


# Bytes kept free on the video's disk: OpenCV reports no failed write ("Failed to write frame"
# only in its log), so a full disk would leave a silently truncated, unplayable file. Stopping
# while this much is left leaves room for the encoder's buffers and the mp4 index.
VIDEO_RESERVE = 8 << 20


class VideoSink:
    """Annotated mp4 (mp4v) at the camera resolution; opened on the first frame. Stops the run
    (AnodetError) before its disk is full, so the frames written stay playable."""

    def __init__(self, path: str | Path, fps: float = 15.0):
        self.path = Path(path)
        check_output_file(self.path, "video")
        self.fps = fps
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.written = 0

    def write(self, frame: Frame, result: FrameResult) -> None:
        img = draw_overlay(frame.rgb, result.anomaly_map, result.mask, result.score)
        h, w = img.shape[:2]
        if self._writer is None:
            self._size = (w, h)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                reason = describe_os_error(exc)
                raise AnodetError(f"cannot create the folder of video {self.path} ({reason})") from None
            self._writer = cv2.VideoWriter(
                str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h)
            )
            if not self._writer.isOpened():
                self._blame_path()
                raise AnodetError(
                    f"cannot open video {self.path} for writing: this OpenCV build has no mp4v "
                    "encoder for it (the file itself can be written); try a .mp4 path or another OpenCV"
                )
        if (w, h) != self._size:
            img = cv2.resize(img, self._size, interpolation=cv2.INTER_AREA)  # a writer has one size
        free = shutil.disk_usage(self.path.parent).free
        if free < VIDEO_RESERVE:
            raise AnodetError(
                f"writing video {self.path} stopped after {self.written} frames: its disk is full "
                f"({free / 2**20:.1f} MiB left); the frames written before are kept, playable"
            )
        self._writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        self.written += 1

    def _blame_path(self) -> None:
        """AnodetError naming the path when the file itself cannot be created (OpenCV only says
        'not opened'; the up-front check passes for root, and on sysfs or a full disk)."""
        existed = self.path.exists()
        try:
            with open(self.path, "ab"):
                pass
        except OSError as exc:
            raise AnodetError(f"cannot write video {self.path} ({describe_os_error(exc)})") from None
        if not existed:
            self.path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()  # writes the mp4 index: without it the file is unplayable


class DisplaySink:
    """Shows annotated frames in an OpenCV window; q or Esc sets ``stop``."""

    WINDOW = "anodet"

    def __init__(self, stop: threading.Event):
        self.stop = stop
        try:
            cv2.namedWindow(self.WINDOW, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise AnodetError(
                "--display needs OpenCV with GUI support, but this OpenCV has none "
                "(opencv-python-headless); pip install opencv-python, or use --video/--save-anomalies"
            ) from None

    def write(self, frame: Frame, result: FrameResult) -> None:
        img = draw_overlay(frame.rgb, result.anomaly_map, result.mask, result.score)
        cv2.imshow(self.WINDOW, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.stop.set()

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.WINDOW)
        except cv2.error:
            pass
