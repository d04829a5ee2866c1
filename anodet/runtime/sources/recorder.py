"""Write RGB-D frames to a real RealSense recording (``.db3``) through the SDK's software device.

Used by the tests and benchmarks (no camera here) and by anyone who wants to replay their own
frames through ``anodet-run`` exactly as a camera recording. Torch-free; pyrealsense2 lazily.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from anodet.errors import AnodetError
from anodet.runtime.sources.realsense import import_realsense

logger = logging.getLogger(__name__)


def write_recording(
    path: str | Path,
    frames: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    fps: int = 30,
    depth_units: float = 0.001,
    focal: float | None = None,
) -> int:
    """Write RGB-D frames to a real RealSense ``.db3`` recording via a software device.

    frames: (rgb uint8 H x W x 3, depth float32 H x W metres) pairs of one size. Depth is
    stored as z16 in ``depth_units`` metres, colour as rgb8, with identical intrinsics and
    identity extrinsics, so aligning depth to colour keeps pixels in place. Returns the count.
    """
    rs = import_realsense()
    path = Path(path)
    if path.suffix != ".db3":
        raise AnodetError(f"{path}: pyrealsense2 {rs.__version__} records .db3 files only")
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise AnodetError("write_recording: no frames given")
    h, w = first[1].shape
    dev = rs.software_device()
    dev.register_info(rs.camera_info.name, "anodet software camera")
    dev.register_info(rs.camera_info.serial_number, "0000")
    sensors, profiles = [], []
    for uid, (name, stream, fmt, bpp) in enumerate(
        (
            ("Depth", rs.stream.depth, rs.format.z16, 2),
            ("Color", rs.stream.color, rs.format.rgb8, 3),
        ),
        start=1,
    ):
        intr = rs.intrinsics()
        intr.width, intr.height, intr.ppx, intr.ppy = w, h, (w - 1) / 2, (h - 1) / 2
        intr.fx = intr.fy = focal or float(max(w, h))
        intr.model, intr.coeffs = rs.distortion.none, [0.0] * 5
        vs = rs.video_stream()
        vs.type, vs.index, vs.uid, vs.width, vs.height = stream, 0, uid, w, h
        vs.fps, vs.bpp, vs.fmt, vs.intrinsics = fps, bpp, fmt, intr
        sensor = dev.add_sensor(name)
        profiles.append(sensor.add_video_stream(vs))
        sensors.append(sensor)
    sensors[0].add_read_only_option(rs.option.depth_units, depth_units)  # get_depth_scale reads it
    extr = rs.extrinsics()
    extr.rotation, extr.translation = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0], [0.0, 0.0, 0.0]
    profiles[0].register_extrinsics_to(profiles[1], extr)
    recorder = rs.recorder(str(path), dev)
    try:
        count = _feed(
            rs, recorder, sensors, profiles, itertools.chain([first], it), fps, depth_units
        )
    finally:
        del recorder  # the file is finalised when the last reference to the recorder goes
    return count


def _feed(
    rs: Any,
    recorder: Any,
    sensors: list,
    profiles: list,
    frames: Iterable,
    fps: int,
    depth_units: float,
) -> int:
    """Push frames through software sensors while the recorder's wrapped sensors stream."""
    # Frames reach the file only through the recorder's wrapped sensors, so those are the ones
    # opened and started. The callback counts what passed through them: stopping a sensor
    # while frames are still queued in the SDK would leave them out of the file.
    wrapped = recorder.query_sensors()
    seen: list[int] = []
    for sensor, profile in zip(wrapped, profiles):
        sensor.open(profile)
        sensor.start(lambda f: seen.append(1))
    first_profile = profiles[0].as_video_stream_profile()
    h, w = first_profile.height(), first_profile.width()
    t0, count = time.time() * 1000.0, 0
    try:
        for i, (rgb, depth) in enumerate(frames):
            if rgb.dtype != np.uint8 or rgb.shape != (h, w, 3) or depth.shape != (h, w):
                raise AnodetError(
                    f"write_recording: frame {i} is rgb {rgb.dtype} {rgb.shape}, depth {depth.shape}; "
                    f"expected uint8 {(h, w, 3)} and {(h, w)} like the first frame"
                )
            z16 = np.clip(np.round(np.nan_to_num(depth) / depth_units), 0, 65535).astype(np.uint16)
            for sensor, profile, pixels, bpp in (
                (sensors[0], profiles[0], z16, 2),
                (sensors[1], profiles[1], np.ascontiguousarray(rgb), 3),
            ):
                swf = rs.software_video_frame()
                swf.pixels, swf.stride, swf.bpp = pixels, w * bpp, bpp
                swf.timestamp = t0 + i * 1000.0 / fps  # host epoch ms, like a camera's global time
                swf.domain, swf.frame_number = rs.timestamp_domain.system_time, i
                swf.profile = profile.as_video_stream_profile()
                if bpp == 2:
                    swf.depth_units = depth_units
                sensor.on_video_frame(swf)
            count += 1
        deadline = time.monotonic() + 10.0
        while len(seen) < 2 * count and time.monotonic() < deadline:
            time.sleep(0.005)
        if len(seen) < 2 * count:
            logger.warning(
                "recorder saw %d of %d frames; the file may be short", len(seen), 2 * count
            )
    finally:
        for sensor in wrapped:
            sensor.stop()
            sensor.close()
    return count
