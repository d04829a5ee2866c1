"""Torch-free runtime: run exported models on camera, recording, folder or synthetic frames.

    from anodet.runtime import run
    summary = run("model.onnx", "recording.db3", events="events.jsonl")

Nothing here imports torch, so an edge box installs ``anodet[onnx,camera]`` (or
``anodet[tensorrt,camera]``) only. pyrealsense2, onnxruntime and TensorRT load lazily.
"""

from anodet.runtime.backends import BACKENDS, Backend, OnnxRuntimeBackend, open_backend
from anodet.runtime.frames import Frame, LiveSource, Source
from anodet.runtime.pipeline import FrameQueue, RunSummary, run
from anodet.runtime.sinks import (
    DisplaySink,
    EventsSink,
    FrameResult,
    SaveAnomaliesSink,
    StatsLogger,
    VideoSink,
    draw_overlay,
)
from anodet.runtime.sources import SOURCE_FORMS, FolderSource, SyntheticSource, open_source

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
