"""The backend table: the one place that knows the inference backends, and their interface.

One row per ``--backend`` name, as Ultralytics lists its export formats: the engine behind it,
the file that implements it (``anodet.runtime.backends.<module>``, loaded on first use by
anodet.runtime.backends.choice), what it runs, the precisions it runs, whether it needs an
NVIDIA GPU and the extra that installs it. ``anodet-run --backend``, its ``--help``, the rows of
``anodet-bench``, the install hints for a missing extra and the tests all read this table.
Adding a backend: one file with ``open_model(path, option, threads) -> Backend`` (and,
optionally, ``unavailable_reason(option)``) and one row here.

Pure data (standard library and anodet.errors only): the backend files import it for their
install hints, the CLI to write its help.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from anodet.errors import AnodetError

if TYPE_CHECKING:
    import numpy as np

    from anodet.artifact import ModelInfo

AUTO = "auto"  # not a row: picks one by the model file (see choice.open_backend)


class Backend(Protocol):
    """An opened model. predict returns {"score": (N,) float32, "anomaly_map": (N,S,S) float32,
    "mask": (N,S,S) uint8}; scores and maps are normalised so that > 0.5 is anomalous."""

    name: str
    info: ModelInfo

    def predict(self, rgb: np.ndarray, depth: np.ndarray | None) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class BackendSpec:
    """One row: how ``--backend NAME`` runs a model."""

    name: str  # the --backend value
    engine: str  # the library that runs the model
    module: str  # anodet.runtime.backends.<module> has open_model(path, option, threads)
    option: str  # handed to open_model: the ONNX Runtime provider, the OpenVINO device
    runs: str  # what it runs, for --help and errors
    precisions: tuple[str, ...]  # precisions of the artifacts it runs
    gpu: bool  # needs an NVIDIA GPU
    extra: str  # pip install 'anodet[EXTRA]' installs the engine
    needs: str  # the top-level module the engine is imported as
    suffixes: tuple[str, ...] = ()  # model files that `auto` sends here
    only: bool = False  # those files run here only, and nothing else does
    device: bool = False  # takes NAME:DEVICE
    remote: bool = False  # runs a model on a server: opened from a URL, not a file
    hint: str = ""  # how to install the engine, when pip install 'anodet[extra]' is not all
    tip: str = ""  # appended when a file this backend cannot run is given to it

    @property
    def install(self) -> str:
        """The install hint for a missing engine."""
        return self.hint or f"pip install 'anodet[{self.extra}]'"

    @property
    def label(self) -> str:
        """The name as --help shows it: ``openvino[:DEVICE]``."""
        return f"{self.name}[:DEVICE]" if self.device else self.name


_FP = ("fp32", "fp16")
# columns: name, engine, module, option, runs, precisions, gpu, extra, needs; then the keywords
TABLE: tuple[BackendSpec, ...] = (
    BackendSpec("onnx-cpu", "ONNX Runtime", "onnx", "cpu", "ONNX files", (*_FP, "int8"), False,
                "onnx", "onnxruntime", hint="pip install 'anodet[onnx]' (or 'anodet[gpu]')"),
    BackendSpec("onnx-cuda", "ONNX Runtime CUDA EP", "onnx", "cuda", "ONNX files", _FP, True,
                "gpu", "onnxruntime"),
    BackendSpec("onnx-trt", "ONNX Runtime TensorRT EP", "onnx", "tensorrt", "ONNX files", _FP, True,
                "gpu", "onnxruntime"),
    BackendSpec("tensorrt", "TensorRT", "tensorrt", "",
                "engines (.engine/.plan) built by `anodet-export tensorrt`", _FP, True, "tensorrt",
                "tensorrt", suffixes=(".engine", ".plan"), only=True,
                hint="install TensorRT: `pip install tensorrt cuda-python --extra-index-url "
                     "https://pypi.nvidia.com` (or `pip install 'anodet[tensorrt]'`); on Jetson use "
                     "JetPack's TensorRT (apt install python3-libnvinfer)",
                tip="use onnx-trt to run an ONNX file with TensorRT"),
    BackendSpec("openvino", "OpenVINO", "openvino", "CPU", "ONNX files and OpenVINO IR (.xml + .bin)",
                (*_FP, "int8"), False, "openvino", "openvino", suffixes=(".xml",), device=True,
                hint="install OpenVINO: pip install 'anodet[openvino]'"),
    BackendSpec("triton", "Triton Inference Server (gRPC)", "triton", "", "a model on a Triton server",
                (*_FP, "int8"), False, "triton", "tritonclient", remote=True,
                hint="install the Triton client: pip install 'anodet[triton]' (tritonclient[grpc])"),
)
_ROWS = {spec.name: spec for spec in TABLE}
BACKENDS = (AUTO, *_ROWS)  # every valid --backend family


def backend_spec(name: str) -> BackendSpec:
    """The row of ``name`` (``openvino:GPU`` -> openvino); AnodetError listing the valid names."""
    family, _, device = name.partition(":")
    spec = _ROWS.get(family)
    if spec is None or (device and not spec.device):
        devices = "".join(f" ({s.name}:DEVICE too)" for s in TABLE if s.device)
        raise AnodetError(f"unknown backend '{name}'; valid: {', '.join(BACKENDS)}{devices}")
    return spec


def backend_help() -> str:
    """The --backend choices as ``anodet-run --help`` lists them."""
    return ", ".join((AUTO, *(spec.label for spec in TABLE)))


def install_hint(name: str) -> str:
    """How to install the engine of backend ``name``."""
    return backend_spec(name).install
