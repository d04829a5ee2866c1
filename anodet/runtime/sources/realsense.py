"""Intel RealSense cameras and recordings (pyrealsense2, imported lazily). Torch-free.

Facts this module relies on (checked with pyrealsense2 2.59):
- Playback drops frames unless ``set_real_time(False)`` is applied *before* the pipeline
  starts: calling it after ``pipeline.start`` races the reader and loses the first frames.
  So we resolve the config first, switch the resolved playback device to non-real-time, then
  start; ``pipeline.start`` reuses that resolved device.
- SDK 2.59's recorder only writes rosbag2 ``.db3`` files; older ``.bag`` files still play.
- Playback reports the end of a file only as the status ``stopped``, not as a frame count, so
  "stopped and nothing arrived for a while" is a guess that a loaded machine can make wrong.
  RecordingSource therefore counts the colour frames a ``.db3`` holds (sources/db3.py) and
  plays until each was delivered.
- Frame buffers belong to the SDK's frame pool: copy them to numpy before queueing, or a slow
  consumer starves the camera.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from anodet.errors import AnodetError
from anodet.runtime.frames import Frame
from anodet.runtime.sources.db3 import count_colour_frames
from anodet.runtime.sources.live import LiveSource

logger = logging.getLogger(__name__)

FILTERS = ("spatial", "temporal", "hole_filling")


def import_realsense() -> Any:
    """The ``pyrealsense2`` module, or AnodetError naming the extra and the system package."""
    try:
        import pyrealsense2 as rs
    except ImportError as exc:
        raise AnodetError(
            f"pyrealsense2 cannot be imported ({exc}); pip install 'anodet[camera]' "
            "(on Linux it also needs the libusb-1.0-0 system package)"
        ) from None
    return rs


def make_filters(names: Iterable[str]) -> list[Any]:
    """Build one SDK post-processing chain (temporal is stateful: one chain per camera).

    Spatial and temporal filters work best on disparity, so they are wrapped in
    depth->disparity->depth transforms, as Intel's post-processing guide recommends.
    """
    names = list(names)
    unknown = [n for n in names if n not in FILTERS]
    if unknown:
        raise AnodetError(f"unknown RealSense filter(s) {unknown}; valid: {', '.join(FILTERS)}")
    rs = import_realsense()
    chain: list[Any] = []
    smoothing = [n for n in ("spatial", "temporal") if n in names]
    if smoothing:
        chain.append(rs.disparity_transform(True))
        chain += [
            rs.spatial_filter() if n == "spatial" else rs.temporal_filter() for n in smoothing
        ]
        chain.append(rs.disparity_transform(False))
    if "hole_filling" in names:
        chain.append(rs.hole_filling_filter())
    return chain


def _color_to_rgb(color: Any, rs: Any) -> np.ndarray:
    data = np.asanyarray(color.get_data())
    fmt = color.get_profile().format()
    if fmt == rs.format.rgb8:
        return data.copy()
    conversions = {
        rs.format.bgr8: cv2.COLOR_BGR2RGB,
        rs.format.rgba8: cv2.COLOR_RGBA2RGB,
        rs.format.bgra8: cv2.COLOR_BGRA2RGB,
        rs.format.yuyv: cv2.COLOR_YUV2RGB_YUYV,
    }
    if fmt not in conversions:
        raise AnodetError(
            f"colour format {fmt} is not supported; use rgb8, bgr8, rgba8, bgra8 or yuyv"
        )
    return cv2.cvtColor(data, conversions[fmt])  # cvtColor allocates: the SDK buffer is released


class _FramesetReader:
    """Turns SDK framesets into Frames: filters, align depth to colour, scale to metres."""

    def __init__(self, rs: Any, filters: Iterable[str]):
        self.rs = rs
        self.filter_names = tuple(filters)
        self.chain = make_filters(self.filter_names)
        self.align = rs.align(rs.stream.color)
        self.depth_scale = 0.001
        self.index = 0
        self.profile: Any = None  # the started pipeline's profile: device info and intrinsics

    def reset(self, profile: Any) -> None:
        """Read the depth scale of a newly started device; a fresh chain drops temporal state."""
        self.profile = profile
        try:
            self.depth_scale = profile.get_device().first_depth_sensor().get_depth_scale()
        except RuntimeError:  # colour-only device or recording
            pass
        self.chain = make_filters(self.filter_names)

    def to_frame(self, frames: Any) -> Frame | None:
        rs = self.rs
        for block in self.chain:
            frames = block.process(frames).as_frameset()
        if self.align is not None and frames.get_depth_frame():  # None: depth left unaligned
            frames = self.align.process(frames)
        color, depth = frames.get_color_frame(), frames.get_depth_frame()
        if not color:  # incomplete set right after start: wait for the next one
            return None
        rgb = _color_to_rgb(color, rs)
        depth_m = None
        if depth:
            depth_m = np.asanyarray(depth.get_data()).astype(np.float32) * np.float32(
                self.depth_scale
            )
        domain = frames.get_frame_timestamp_domain()
        stamp = frames.get_timestamp() / 1000.0
        if domain not in (rs.timestamp_domain.system_time, rs.timestamp_domain.global_time):
            stamp = time.time()  # hardware clock counts from power-on: use host time instead
        frame = Frame(self.index, stamp, rgb, depth_m, f"frame {color.get_frame_number()}")
        self.index += 1
        return frame


class RealSenseSource(LiveSource):
    """A live RealSense camera: depth z16 + colour rgb8 at width x height @ fps, depth aligned
    to colour. Reconnects with backoff when unplugged (see LiveSource)."""

    def __init__(self, serial: str | None = None, *, width: int = 640, height: int = 480,
                 fps: int = 30, filters: Iterable[str] = (), frame_timeout_ms: int = 5000,
                 give_up_after: float = 30.0):
        super().__init__(give_up_after=give_up_after)
        self.rs = import_realsense()
        self.serial, self.width, self.height, self.fps = serial, width, height, fps
        self.frame_timeout_ms = frame_timeout_ms
        self.description = f"RealSense camera {serial}" if serial else "RealSense camera"
        self.reader = _FramesetReader(self.rs, filters)
        self.pipe: Any = None

    def _connect(self) -> None:
        rs = self.rs
        devices = [d.get_info(rs.camera_info.serial_number) for d in rs.context().query_devices()]
        if not devices or (self.serial and self.serial not in devices):
            raise RuntimeError(
                f"no such camera connected (connected: {', '.join(devices) or 'none'})"
            )
        cfg = rs.config()
        if self.serial:
            cfg.enable_device(self.serial)
        cfg.enable_stream(rs.stream.depth, self.width, self.height, rs.format.z16, self.fps)
        cfg.enable_stream(rs.stream.color, self.width, self.height, rs.format.rgb8, self.fps)
        pipe = rs.pipeline()
        profile = pipe.start(cfg)
        self.pipe = pipe
        self.reader.reset(profile)

    def _read(self) -> Frame | None:
        return self.reader.to_frame(self.pipe.wait_for_frames(self.frame_timeout_ms))

    def _disconnect(self) -> None:
        pipe, self.pipe = self.pipe, None
        if pipe is not None:
            pipe.stop()


class RecordingSource:
    """Plays a ``.bag``/``.db3`` recording once: every recorded frame set, once, in file order.

    End of file: a ``.db3`` file's SQLite tables say how many colour frames it holds
    (``expected``), and playback ends once each of them was delivered. If the SDK reports the
    end of the file before that (its status turns ``stopped`` while sets are missing), the file
    is played again and only the sets not seen yet (by colour frame number and timestamp) are
    yielded; what is still missing after ``replays`` extra passes is counted in ``lost`` and
    logged, never dropped silently. ``.bag`` files carry no count: they end when the status is
    ``stopped`` and no set arrived for ``drain`` seconds.
    """

    live = False

    def __init__(
        self,
        path: str | Path,
        *,
        filters: Iterable[str] = (),
        stall_timeout: float = 10.0,
        drain: float = 1.0,
        replays: int = 2,
    ):
        self.rs = import_realsense()
        self.path = Path(path)
        self.description = f"recording {self.path}"
        self.reader = _FramesetReader(self.rs, filters)
        self.stall_timeout, self.drain, self.replays = stall_timeout, drain, replays
        self.expected = count_colour_frames(self.path)  # None: the file cannot tell (.bag)
        self.lost = 0  # recorded frame sets playback never delivered
        self.passes = 0  # plays of the file (more than 1: the SDK ended a pass early)
        self.mispaired = 0  # sets deferred because their colour and depth differ in time
        self.fps: float | None = None
        self._closed = False

    def close(self) -> None:
        self._closed = True

    def _start(self) -> tuple[Any, Any]:
        rs = self.rs
        pipe, cfg = rs.pipeline(), rs.config()
        try:
            cfg.enable_device_from_file(str(self.path), repeat_playback=False)
            resolved = cfg.resolve(rs.pipeline_wrapper(pipe))
            resolved.get_device().as_playback().set_real_time(False)  # before start: see module doc
            profile = pipe.start(cfg)
        except RuntimeError as exc:
            raise AnodetError(f"cannot play recording {self.path}: {exc}") from None
        streams = {s.stream_type(): s for s in profile.get_streams()}
        if rs.stream.color not in streams:
            pipe.stop()
            raise AnodetError(f"recording {self.path} has no colour stream")
        self.fps = streams[rs.stream.color].fps() or None
        self.reader.reset(profile)
        return pipe, profile.get_device().as_playback()

    def _complete(self, seen: set) -> bool:
        return self.expected is not None and len(seen) >= self.expected

    def __iter__(self) -> Iterator[Frame]:
        seen: set[tuple[int, float]] = set()  # (colour frame number, timestamp) of yielded sets
        for attempt in range(1, self.replays + 2):
            self.passes = attempt
            if attempt > 1:
                logger.warning(
                    "%s: the SDK ended playback after %d of %d frames; playing it again for the rest",
                    self.description, len(seen), self.expected,
                )
            yield from self._play(seen)
            if self._closed or self.expected is None or self._complete(seen):
                return
        self.lost = self.expected - len(seen)
        logger.warning(
            "%s: %d of %d recorded frames were never delivered by the SDK (after %d passes); "
            "they are counted as lost", self.description, self.lost, self.expected, self.passes,
        )

    def _play(self, seen: set[tuple[int, float]]) -> Iterator[Frame]:
        """One pass over the file, yielding the frame sets not in ``seen`` (and adding them)."""
        pipe, playback = self._start()
        stopped = self.rs.playback_status.stopped
        try:
            last = time.monotonic()
            while not self._closed and not self._complete(seen):
                ok, frames = pipe.try_wait_for_frames(200)
                now = time.monotonic()
                if ok:
                    last = now
                    frame = self._to_frame(frames, seen)
                    if frame is not None:
                        yield frame
                elif playback.current_status() == stopped and now - last > self.drain:
                    return  # the SDK is done with this pass and nothing is in flight any more
                elif now - last > self.stall_timeout:
                    raise AnodetError(
                        f"recording {self.path} stalled: no frame for {self.stall_timeout:g} s"
                    )
        finally:
            pipe.stop()

    def _to_frame(self, frames: Any, seen: set[tuple[int, float]]) -> Frame | None:
        color = frames.get_color_frame()
        if not color:  # a set without colour cannot be judged: say so instead of losing it
            depth = frames.get_depth_frame()
            number = depth.get_frame_number() if depth else "?"
            self.reader.index += 1
            return Frame(
                self.reader.index - 1, time.time(), None, None, f"depth frame {number}",
                error="frame set without a colour frame",
            )
        key = (color.get_frame_number(), color.get_timestamp())
        if key in seen:  # a replayed pass: judged already
            return None
        depth = frames.get_depth_frame()
        # Non-real-time playback (SDK 2.59) now and then pairs colour with a depth frame of
        # another time: not judged now, a later pass plays it again (after the rest of the file).
        if depth and abs(depth.get_timestamp() - color.get_timestamp()) > 500.0 / (self.fps or 30):
            self.mispaired += 1
            return None
        seen.add(key)
        return self.reader.to_frame(frames)
