"""Inference backends: one file per engine behind one small interface, chosen from one table.

table (BackendSpec rows, BACKENDS, the Backend protocol) is the one place that knows them;
choice opens one (open_backend, open_remote) by loading its file on first use; onnx (ONNX Runtime: onnx-cpu, onnx-cuda, onnx-trt), tensorrt (+
cuda_buffers), openvino and triton (a Triton server's client) each implement one engine and
load it lazily, so importing this package needs none of them.

May import: anodet.artifact, anodet.gpu, anodet.errors, and each other. Never a source, a
sink, the loop (pipeline, judge) or anodet.serve.
"""

from anodet.runtime.backends.choice import open_backend, open_remote, unavailable_reason
from anodet.runtime.backends.onnx import (
    PROVIDER_CHOICES,
    OnnxRuntimeBackend,
    choose_providers,
    provider_options,
)
from anodet.runtime.backends.table import (
    BACKENDS,
    TABLE,
    Backend,
    BackendSpec,
    backend_help,
    backend_spec,
    install_hint,
)

TENSORRT_HINT = install_hint("tensorrt")

__all__ = [
    "BACKENDS",
    "PROVIDER_CHOICES",
    "TABLE",
    "TENSORRT_HINT",
    "Backend",
    "BackendSpec",
    "OnnxRuntimeBackend",
    "backend_help",
    "backend_spec",
    "choose_providers",
    "install_hint",
    "open_backend",
    "open_remote",
    "provider_options",
    "unavailable_reason",
]
