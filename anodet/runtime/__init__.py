"""Torch-free runtime: run exported models on camera, recording, folder or synthetic frames.

    from anodet.runtime import run
    summary = run("model.onnx", "recording.db3", events="events.jsonl")

The loop lives here: pipeline (run: capture thread -> queue -> batches -> sinks), frame_queue,
judge (one batch: preprocess, infer, verdicts), summary (RunSummary), regions (defect regions
of a mask) and frames (Frame, FrameResult, the Source and Sink protocols: the data types every
sub-package shares). Sub-packages: backends (inference engines, chosen from one table),
sources (where frames come from), sinks (where verdicts go).

Layers, enforced by tests/test_import_graph.py: frames and regions import no other runtime
module; sources and sinks import those two, never a backend; backends import neither sources
nor sinks; only the loop imports all three. Nothing here imports torch or anodet.serve, so an
edge box installs ``anodet[onnx,camera]`` (or ``anodet[tensorrt,camera]``) only.
pyrealsense2, onnxruntime, OpenVINO and TensorRT load lazily.
"""

from anodet.runtime.backends import BACKENDS, Backend, OnnxRuntimeBackend, open_backend
from anodet.runtime.frame_queue import FrameQueue
from anodet.runtime.frames import Frame, FrameResult, Source
from anodet.runtime.pipeline import RunSummary, run
from anodet.runtime.sinks import (
    DisplaySink,
    EventsSink,
    SaveAnomaliesSink,
    StatsLogger,
    VideoSink,
    draw_overlay,
)
from anodet.runtime.sources import (
    SOURCE_FORMS,
    FolderSource,
    LiveSource,
    SyntheticSource,
    open_source,
)

__all__ = [
    "BACKENDS",
    "SOURCE_FORMS",
    "Backend",
    "DisplaySink",
    "EventsSink",
    "FolderSource",
    "Frame",
    "FrameQueue",
    "FrameResult",
    "LiveSource",
    "OnnxRuntimeBackend",
    "RunSummary",
    "SaveAnomaliesSink",
    "Source",
    "StatsLogger",
    "SyntheticSource",
    "VideoSink",
    "draw_overlay",
    "open_backend",
    "open_source",
    "run",
]
