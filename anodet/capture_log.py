"""``capture.json``: what camera, settings and frames made a captured folder. Torch-free.

One file at the root of a captured dataset holds a list of sessions, one per ``anodet-capture``
run into that folder (resuming appends a session, it never rewrites an earlier one). A session
records the source, the device (name, serial, firmware), the colour and depth streams (format,
fps, resolution, intrinsics), the depth units, the SDK filter chain, the depth file format and
every written frame with its capture timestamp.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from anodet import __version__
from anodet.errors import AnodetError

LOG_NAME = "capture.json"
FORMAT = "anodet-capture"
SCHEMA = 1


def now_iso() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def intrinsics_dict(intr: Any) -> dict[str, Any]:
    """An ``rs.intrinsics`` as plain JSON: pixels for the focal lengths and principal point."""
    return {
        "width": intr.width, "height": intr.height, "fx": intr.fx, "fy": intr.fy,
        "ppx": intr.ppx, "ppy": intr.ppy, "model": str(intr.model).split(".")[-1],
        "coeffs": [float(c) for c in intr.coeffs],
    }


def describe_profile(rs: Any, profile: Any) -> dict[str, Any]:
    """Device info and stream settings of a started pipeline profile (live or playback)."""
    dev = profile.get_device()
    info = {}
    for key in ("name", "serial_number", "firmware_version", "product_line", "usb_type_descriptor"):
        field = getattr(rs.camera_info, key)
        # A recording keeps only what its device registered: firmware is often absent.
        info[key] = dev.get_info(field) if dev.supports(field) else None
    streams = {}
    for sp in profile.get_streams():
        name = str(sp.stream_type()).split(".")[-1]
        entry = {"format": str(sp.format()).split(".")[-1], "fps": sp.fps()}
        if sp.is_video_stream_profile():
            entry["intrinsics"] = intrinsics_dict(sp.as_video_stream_profile().get_intrinsics())
        streams[name] = entry
    return {"device": info, "playback": dev.is_playback(), "streams": streams}


class CaptureLog:
    """The sessions of one captured folder; ``save()`` replaces the file atomically."""

    def __init__(self, root: Path):
        self.path = root / LOG_NAME
        self.sessions: list[dict[str, Any]] = []
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                raise AnodetError(
                    f"{self.path} is unreadable ({exc}); move it away to capture into {root}"
                ) from None
            if not isinstance(raw, dict) or raw.get("format") != FORMAT:
                raise AnodetError(f"{self.path} is not an anodet capture log; move it away first")
            self.sessions = list(raw.get("sessions", []))

    def begin(self, **fields: Any) -> dict[str, Any]:
        """Open a new session (returned, to be filled in) after the earlier ones."""
        session = {"started": now_iso(), "ended": None, "anodet": __version__, **fields,
                   "written": 0, "frames": []}
        self.sessions.append(session)
        return session

    def save(self) -> None:
        """Write the log; a crash mid-write leaves the previous version, never half a file."""
        tmp = self.path.with_name(f".{LOG_NAME}.{os.getpid()}.tmp")
        # Frames last in each session, so the settings read first in the file.
        sessions = [{**{k: v for k, v in s.items() if k != "frames"}, "frames": s.get("frames", [])}
                    for s in self.sessions]
        body = {"format": FORMAT, "schema": SCHEMA, "sessions": sessions}
        try:
            tmp.write_text(json.dumps(body, indent=1))
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise

    def previous(self, split: str) -> dict[str, Any] | None:
        """The latest earlier session into ``split``, or None."""
        for session in reversed(self.sessions[:-1]):
            if session.get("split") == split:
                return session
        return None
