"""The old module paths of the runtime still import for one release, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import sys

import pytest

MOVED = {
    "anodet.runtime.tensorrt_backend": ("anodet.runtime.backends.tensorrt", "TensorRTBackend"),
    "anodet.runtime.openvino_backend": ("anodet.runtime.backends.openvino", "OpenVinoBackend"),
    "anodet.runtime.triton_backend": ("anodet.runtime.backends.triton", "TritonBackend"),
    "anodet.runtime.realsense": ("anodet.runtime.sources.realsense", "RecordingSource"),
    "anodet.runtime.recorder": ("anodet.runtime.sources.recorder", "write_recording"),
    # model.py of python-flavour repositories exported before the move imports this one
    "anodet.runtime.triton_model": ("anodet.serve.triton_model", "TritonPythonModel"),
    "anodet.runtime.triton_server": ("anodet.serve.triton_server", "TritonServer"),
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_warns_and_gives_the_same_objects(old, monkeypatch):
    new, name = MOVED[old]
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=f"import {new} instead"):
        alias = importlib.import_module(old)
    assert getattr(alias, name) is getattr(importlib.import_module(new), name)


def test_the_packages_keep_their_old_module_names():
    from anodet.runtime.backends import BACKENDS, TENSORRT_HINT, choose_providers, open_backend  # noqa: F401
    from anodet.runtime.sinks import LATENCY_KEYS, EventsSink, FrameResult, draw_overlay  # noqa: F401
    from anodet.runtime.sources import RECORDING_SUFFIXES, SOURCE_FORMS, open_source  # noqa: F401
