"""Record RealSense frames, live or from a ``.db3``/``.bag`` recording, into the folder layout.

Each kept frame becomes ``<out>/<split>/rgb/NNNNNN.png`` and ``<out>/<split>/depth/NNNNNN.png``
(16-bit, millimetres: only for a camera whose depth unit is 1 mm, so that ``load_depth`` reads it
back exactly), ``.tiff`` (float32 z in metres, any depth unit) or ``.tiff`` with an organized
H x W x 3 point cloud in metres (``xyz``, deprojected with the stream intrinsics). Frames come
from the runtime's sources (``anodet.runtime.sources.realsense``): depth aligned to colour,
SDK filters applied, unplugged cameras reconnected. ``capture.json`` (``anodet.capture_log``) records the
camera and every frame. Capturing into an existing folder continues its numbering and never
replaces a file; whatever was written before a failure stays on disk and in the log.
Torch-free; pyrealsense2 is imported only for RealSense sources.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import tifffile

from anodet.capture_log import CaptureLog, describe_profile, now_iso
from anodet.errors import AnodetError, CaptureError
from anodet.progress import progress_bar
from anodet.runtime.frames import Frame, Source
from anodet.runtime.sources import RECORDING_SUFFIXES

logger = logging.getLogger(__name__)

DEPTH_FORMATS = ("png", "tiff", "xyz")
SPLIT_FORMS = ("train/normal", "val/normal", "test/normal", "test/anomaly", "test/anomaly/<type>")
_SPLIT = re.compile(r"^((train|val|test)/normal|test/anomaly(/[A-Za-z0-9][A-Za-z0-9_.-]*)?)$")
PNG_UNIT_M = 0.001  # load_depth reads a 16-bit depth PNG as millimetres


@dataclass
class CaptureResult:
    """What one capture run did. ``stopped_by``: end, max or interrupted."""

    folder: Path  # <out>/<split>
    written: int = 0
    first_index: int = 0
    skipped: int = 0  # frames the source could not deliver (error frames)
    reconnects: int = 0
    lost: int = 0  # recorded frame sets the SDK never played (RecordingSource.lost)
    stopped_by: str = "end"
    files: list[str] = field(default_factory=list)


def check_split(split: str) -> str:
    """The split folder, e.g. ``train/normal`` or ``test/anomaly/scratch``; else AnodetError."""
    norm = split.strip().strip("/")
    if not _SPLIT.match(norm):
        raise AnodetError(f"split '{split}' is not a folder-layout split; use one of "
                          f"{', '.join(SPLIT_FORMS)}")
    return norm


def open_capture_source(spec: str, *, width: int = 640, height: int = 480, fps: int = 30,
                        filters: tuple[str, ...] = (), align: bool = True,
                        give_up_after: float = 30.0) -> Source:
    """A live camera (``realsense[:SERIAL]``) or a recording (``PATH.db3``/``PATH.bag``).

    ``align=False`` keeps depth at its own resolution and viewpoint (only usable when the two
    streams already share both, as on a D405)."""
    from anodet.runtime.sources.realsense import RealSenseSource, RecordingSource

    if spec == "realsense" or spec.startswith("realsense:"):
        source: Any = RealSenseSource(spec.partition(":")[2] or None, width=width, height=height,
                                      fps=fps, filters=filters, give_up_after=give_up_after)
    elif Path(spec).suffix.lower() in RECORDING_SUFFIXES:
        if not Path(spec).is_file():
            raise AnodetError(f"recording {spec} not found")
        source = RecordingSource(spec, filters=filters)
    else:
        raise AnodetError(f"cannot capture from '{spec}'; use realsense, realsense:SERIAL, "
                          "PATH.db3 or PATH.bag")
    if not align:
        source.reader.align = None
    return source


def next_index(folder: Path) -> int:
    """One past the largest numeric file stem under ``folder``/{rgb,depth} (0 when empty)."""
    stems = [int(p.stem) for sub in ("rgb", "depth") if (folder / sub).is_dir()
             for p in (folder / sub).iterdir() if p.stem.isdigit()]
    return max(stems) + 1 if stems else 0


def _prepare(folder: Path) -> None:
    probe = folder / "rgb" / ".anodet-write-test"
    try:
        for sub in ("rgb", "depth"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise AnodetError(f"cannot write to {folder} ({exc.strerror or exc}); "
                          "choose a writable output folder") from None


def _rays(rs: Any, intr: Any) -> np.ndarray:
    """Unit-depth rays H x W x 3 of the stream intrinsics: xyz = rays * z."""
    h, w = intr.height, intr.width
    if not any(intr.coeffs):  # pinhole: the SDK's deprojection reduces to this exactly
        u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        return np.stack([(u - intr.ppx) / intr.fx, (v - intr.ppy) / intr.fy, np.ones_like(u)],
                        axis=-1).astype(np.float32)
    # Distortion: let the SDK deproject each pixel once (its model, not a re-implementation).
    rays = [rs.rs2_deproject_pixel_to_point(intr, [float(x), float(y)], 1.0)
            for y in range(h) for x in range(w)]
    return np.asarray(rays, np.float32).reshape(h, w, 3)


class _PairWriter:
    """Writes one RGB/depth pair per frame with exclusive creates; removes a half-written pair."""

    def __init__(self, folder: Path, depth_format: str, intrinsics: Any, rs: Any):
        self.folder, self.depth_format = folder, depth_format
        self.intrinsics, self.rs = intrinsics, rs
        self._rays: np.ndarray | None = None

    def write(self, stem: str, frame: Frame) -> list[Path]:
        ok, png = cv2.imencode(".png", cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise AnodetError(f"cannot encode frame {frame.name} as PNG")
        rgb_path = self.folder / "rgb" / f"{stem}.png"
        suffix = ".png" if self.depth_format == "png" else ".tiff"
        depth_path = self.folder / "depth" / f"{stem}{suffix}"
        created: list[Path] = []
        try:
            for path, writer in ((rgb_path, lambda fh: fh.write(png.tobytes())),
                                 (depth_path, lambda fh: self._write_depth(fh, frame.depth))):
                with open(path, "xb") as fh:  # "x": an existing file is never replaced
                    created.append(path)
                    writer(fh)
        except OSError:
            for path in created:  # only what this call created: never a pre-existing file
                path.unlink(missing_ok=True)
            raise
        return created

    def _write_depth(self, fh: Any, depth: np.ndarray) -> None:
        if self.depth_format == "png":
            z = np.clip(np.round(depth / PNG_UNIT_M), 0, 65535).astype(np.uint16)
            ok, buf = cv2.imencode(".png", z)
            if not ok:
                raise AnodetError("cannot encode depth as 16-bit PNG")
            fh.write(buf.tobytes())
        elif self.depth_format == "tiff":
            tifffile.imwrite(fh, depth.astype(np.float32))
        else:
            if self._rays is None:
                self._rays = _rays(self.rs, self.intrinsics)
            tifffile.imwrite(fh, self._rays * depth[..., None], photometric="rgb")


def _stream_setup(source: Source, frame: Frame, depth_format: str) -> tuple[dict, Any, Any]:
    """Check the first frame and describe the stream: (log fields, intrinsics, rs module)."""
    reader = getattr(source, "reader", None)
    profile = getattr(reader, "profile", None)
    if frame.depth is None:
        raise AnodetError(f"{source.description} delivers no depth stream; anodet-capture "
                          "records colour and depth pairs")
    (h, w), (dh, dw) = frame.rgb.shape[:2], frame.depth.shape
    if (h, w) != (dh, dw):
        raise AnodetError(f"{source.description}: colour is {w}x{h} but depth {dw}x{dh} and depth "
                          "is not aligned to colour; capture with alignment (drop --no-align)")
    aligned = reader is not None and reader.align is not None
    units = float(reader.depth_scale) if reader is not None else None
    if depth_format == "png" and units is not None and abs(units - PNG_UNIT_M) > 1e-9:
        raise AnodetError(f"{source.description} has depth units of {units:.6g} m, but a 16-bit "
                          "depth PNG is read back as millimetres; use --depth-format tiff or xyz")
    fields: dict[str, Any] = {
        "resolution": [w, h], "depth_units_m": units, "aligned_to_colour": aligned,
        "filters": list(getattr(reader, "filter_names", ())), "device": None,
    }
    intr = rs = None
    if profile is not None:
        rs = reader.rs
        fields.update(describe_profile(rs, profile))
        stream = rs.stream.color if aligned else rs.stream.depth
        intr = profile.get_stream(stream).as_video_stream_profile().get_intrinsics()
        fields["depth_intrinsics_stream"] = "color" if aligned else "depth"
    if depth_format == "xyz" and (intr is None or (intr.width, intr.height) != (w, h)):
        raise AnodetError(f"{source.description}: no {w}x{h} stream intrinsics to deproject depth "
                          "into xyz; use --depth-format png or tiff")
    return fields, intr, rs


def capture(source: Source, out: str | Path, split: str, *, depth_format: str = "png",
            stride: int = 1, interval: float | None = None, max_frames: int | None = None,
            progress: bool = True, save_every: int = 50) -> CaptureResult:
    """Write every ``stride``-th frame of ``source`` (at least ``interval`` s apart, at most
    ``max_frames``) to ``out``/``split``; return what was done. Ctrl-C ends it normally.

    Raises AnodetError for bad options or input, and when the source or the disk fails midway:
    then the frames written before are kept on disk and in capture.json, and counted in the message.
    """
    split = check_split(split)
    if depth_format not in DEPTH_FORMATS:
        raise AnodetError(f"depth format '{depth_format}' unknown; use one of "
                          f"{', '.join(DEPTH_FORMATS)}")
    if stride < 1 or (interval or 0) < 0 or (max_frames is not None and max_frames < 1):
        raise AnodetError("--stride and --max must be at least 1 and --interval not negative")
    root = Path(out)
    folder = root / split
    _prepare(folder)
    log = CaptureLog(root)
    res = CaptureResult(folder, first_index=next_index(folder))
    session = log.begin(split=split, source=source.description, depth_format=depth_format,
                        stride=stride, interval_s=interval, max_frames=max_frames,
                        first_index=res.first_index)
    total = max_frames or (getattr(source, "expected", None) or 0) // stride or None
    bar = progress_bar(total=total, desc=f"capture {split}", unit="frame", disable=not progress)
    frames, writer, seen, last_kept, failure = iter(source), None, 0, None, None
    try:
        for frame in frames:
            if frame.error is not None or frame.rgb is None:
                res.skipped += 1
                logger.warning("%s: skipped %s (%s)", source.description, frame.name, frame.error)
                continue
            if writer is None:
                fields, intr, rs = _stream_setup(source, frame, depth_format)
                session.update(fields)
                writer = _PairWriter(folder, depth_format, intr, rs)
                _warn_if_changed(log.previous(split), session)
            seen += 1
            if (seen - 1) % stride or (interval and last_kept is not None
                                       and frame.timestamp - last_kept < interval):
                continue
            stem = f"{res.first_index + res.written:06d}"
            writer.write(stem, frame)
            last_kept = frame.timestamp
            res.written += 1
            res.files.append(stem)
            session["frames"].append(
                {"stem": stem, "timestamp": frame.timestamp, "source": frame.name})
            bar.update()
            if res.written == 1 or res.written % save_every == 0:
                _save(log, session, res, source)
            if max_frames and res.written >= max_frames:
                res.stopped_by = "max"
                break
    except KeyboardInterrupt:
        res.stopped_by = "interrupted"
    except OSError as exc:
        failure = f"cannot write {exc.filename or folder}: {exc.strerror or exc}"
    except AnodetError as exc:
        failure = str(exc)
    except RuntimeError as exc:  # pyrealsense2 errors the sources do not translate
        failure = f"{source.description} failed: {exc}"
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()  # stops the SDK pipeline now, not at garbage collection
        source.close()
        bar.close()
    res.reconnects = getattr(source, "reconnects", 0)
    res.lost = getattr(source, "lost", 0)
    if failure is not None:
        res.stopped_by = f"error: {failure}"
    saved = _save(log, session, res, source, final=True) if res.written else True
    if failure is None:
        return res
    if not res.written:
        raise CaptureError(failure, failure)
    note = "" if saved is True else f" (capture.json could not be updated: {saved})"
    raise CaptureError(f"{failure}; the {res.written} frames captured before "
                       f"({res.files[0]}..{res.files[-1]}) are kept in {folder}{note}", failure)


def _save(log: CaptureLog, session: dict, res: CaptureResult, source: Source,
          final: bool = False) -> bool | str:
    session.update(written=res.written, skipped=res.skipped, stopped_by=res.stopped_by,
                   reconnects=getattr(source, "reconnects", 0), lost=getattr(source, "lost", 0),
                   ended=now_iso() if final else None)
    try:
        log.save()
    except OSError as exc:  # a full disk: the image files are what matters, say so and go on
        logger.error("cannot update %s: %s", log.path, exc.strerror or exc)
        return f"{exc.strerror or exc}"
    return True


def _warn_if_changed(before: dict | None, now: dict) -> None:
    if not before:
        return
    for key in ("resolution", "depth_units_m", "depth_format", "aligned_to_colour"):
        if before.get(key) != now.get(key):
            logger.warning("split %s: %s was %s in the earlier capture, now %s; the folder mixes "
                           "both", now["split"], key, before.get(key), now.get(key))
    old, new = (before.get("device") or {}), (now.get("device") or {})
    if old.get("serial_number") != new.get("serial_number"):
        logger.warning("split %s: earlier frames came from camera %s, these from %s", now["split"],
                       old.get("serial_number"), new.get("serial_number"))
