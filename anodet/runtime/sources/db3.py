"""How many colour frames a rosbag2 ``.db3`` RealSense recording holds, from its SQLite tables.

pyrealsense2 tells the end of a recording only by a playback status, never by how many frames the
file held, so a player that trusts the status (plus a timeout) cannot notice frames the SDK did
not deliver. A rosbag2 file is an SQLite database (tables ``topics`` and ``messages``): counting
the messages of the colour image topic gives the number of frame sets to expect. Torch-free;
standard library only.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from anodet.errors import AnodetError

# librealsense names image topics /device_<d>/sensor_<s>/<Stream>_<index>/image/data, with a
# /compressed suffix (colour) when the recorder compressed the frames, as SDK 2.59 does.
COLOUR_TOPIC = re.compile(r"^/device_0/sensor_\d+/Color_0/image/data(/compressed)?$")


def count_colour_frames(path: str | Path) -> int | None:
    """Colour frames recorded in a ``.db3`` file; None for other files or without colour topic.

    Raises AnodetError when the file is not a readable SQLite database (truncated, damaged).
    """
    path = Path(path)
    if path.suffix.lower() != ".db3":
        return None
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            topics = dict(con.execute("SELECT id, name FROM topics").fetchall())
            counts = dict(
                con.execute("SELECT topic_id, COUNT(*) FROM messages GROUP BY topic_id").fetchall()
            )
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise AnodetError(
            f"recording {path} is damaged or not a rosbag2 .db3 file (SQLite: {exc})"
        ) from None
    colour = sorted(tid for tid, name in topics.items() if COLOUR_TOPIC.match(str(name)))
    if not colour:
        return None
    return int(counts.get(colour[0], 0))  # the pipeline plays one colour stream: Color_0
