"""Frame sources: where the loop's frames come from. Torch-free.

Modules: forms (the ``--source`` strings, open_source), folder (image folders), synthetic
(generated frames), live (the reconnecting live source), realsense (RealSense cameras and
recordings, pyrealsense2 loaded lazily), playback_process (recordings played in a child
process that may crash), db3 (frame counts of rosbag2 recordings), recorder (writes real .db3
recordings from numpy frames).

May import: anodet.runtime.frames, anodet.preprocess, anodet.errors (and anodet.data.synthetic
on first use). Never a backend, a sink, the loop or anodet.serve.
"""

from anodet.runtime.sources.folder import FolderSource, truth_of
from anodet.runtime.sources.forms import RECORDING_SUFFIXES, SOURCE_FORMS, open_source
from anodet.runtime.sources.live import LiveSource
from anodet.runtime.sources.synthetic import SyntheticSource

__all__ = [
    "RECORDING_SUFFIXES",
    "SOURCE_FORMS",
    "FolderSource",
    "LiveSource",
    "SyntheticSource",
    "open_source",
    "truth_of",
]
