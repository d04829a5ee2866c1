"""OpenVINO backend (row openvino[:DEVICE]): an anodet ``.onnx`` or OpenVINO IR (``.xml`` + ``.bin``) on an Intel device.

Torch-free; ``pip install 'anodet[openvino]'``. OpenVINO reads ONNX directly, so any anodet
export runs here; ``anodet-export openvino`` writes an IR with FP16 weights (or INT8). The
anodet metadata comes from the model's runtime info: an IR carries it under ``anodet``, an ONNX
file's ``metadata_props`` appear under ``framework/anodet``; both are checked with
:mod:`anodet.artifact`. The device name is passed to OpenVINO (CPU, GPU, GPU.1, NPU, AUTO,
HETERO:GPU,CPU, ...); a device this machine does not have is refused with the list it has.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from anodet.artifact import (
    INPUT_DEPTH,
    INPUT_RGB,
    METADATA_KEY,
    OUTPUTS,
    ModelInfo,
    info_from_json,
    run_batched,
)
from anodet.errors import AnodetError
from anodet.runtime.backends.table import install_hint

logger = logging.getLogger(__name__)
OPENVINO_HINT = install_hint("openvino")
IR_SUFFIX = ".xml"
VIRTUAL_DEVICES = ("AUTO", "HETERO", "MULTI", "BATCH")  # OpenVINO picks the real devices


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.startswith("Exception from")]
    return (lines[-1] if lines else exc.__class__.__name__)[:200]


def model_metadata(model: Any, source: str) -> ModelInfo:
    """ModelInfo from an ``openvino.Model``'s runtime info (IR: ``anodet``; ONNX: ``framework/anodet``)."""
    for key in ([METADATA_KEY], ["framework", METADATA_KEY]):
        if model.has_rt_info(key):
            return info_from_json(model.get_rt_info(key).astype(str), source)
    raise AnodetError(f"{source} is not an anodet export (no '{METADATA_KEY}' metadata); "
                      "export it with `anodet-export onnx` or `anodet-export openvino`")


def read_model(core: Any, path: Path) -> Any:
    """Read an ``.onnx`` or IR ``.xml`` (whose ``.bin`` must sit beside it); AnodetError otherwise."""
    if not path.is_file():
        raise AnodetError(f"model file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".onnx", IR_SUFFIX):
        raise AnodetError(f"backend 'openvino' runs .onnx or OpenVINO IR (.xml + .bin), not {path.name}")
    if suffix == IR_SUFFIX and not path.with_suffix(".bin").is_file():
        raise AnodetError(f"OpenVINO IR {path} has no weights file {path.with_suffix('.bin').name} "
                          "beside it; copy both files or export again with `anodet-export openvino`")
    try:
        return core.read_model(str(path))
    except RuntimeError as exc:
        raise AnodetError(f"{path} is not a readable OpenVINO model ({_first_line(exc)})") from None


def check_device(core: Any, device: str) -> None:
    """AnodetError unless ``device`` (or, for GPU.1-style names, its family) is available here."""
    available = list(core.available_devices)
    family = device.split(":")[0].split(".")[0].upper()
    if family in VIRTUAL_DEVICES or device in available or family in {d.split(".")[0] for d in available}:
        return
    raise AnodetError(f"OpenVINO device {device!r} is not available on this machine (available: "
                      f"{', '.join(available) or 'none'}); GPU and NPU need Intel's drivers")


class OpenVinoBackend:
    """An anodet model compiled by OpenVINO for ``device``; ``predict`` as in Backend."""

    def __init__(self, path: str | Path, device: str = "CPU", threads: int | None = None):
        try:
            import openvino as ov
        except ImportError:
            raise AnodetError(f"backend 'openvino' needs OpenVINO: {OPENVINO_HINT}") from None
        self.path = Path(path)
        core = ov.Core()
        model = read_model(core, self.path)
        self.info: ModelInfo = model_metadata(model, str(self.path))
        names = {i.get_any_name() for i in model.inputs}
        outputs = {name for o in model.outputs for name in o.get_names()}
        if names != set(self.info.input_names) or not set(OUTPUTS) <= outputs:
            raise AnodetError(
                f"{self.path}: inputs {sorted(names)} / outputs {sorted(outputs)} do not match its "
                f"metadata (expected inputs {list(self.info.input_names)}, outputs {list(OUTPUTS)})"
            )
        check_device(core, device)
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": int(threads)} if threads else {}
        if device == "CPU":
            # CPUs with BF16 (this Zen 4 too) would otherwise run FP32 and FP16 models in BF16,
            # which moves scores far beyond the parity bound; INT8 layers stay INT8.
            config["INFERENCE_PRECISION_HINT"] = "f32"
        try:
            self.compiled = core.compile_model(model, device, config)
        except RuntimeError as exc:
            raise AnodetError(f"OpenVINO could not compile {self.path.name} for {device}: "
                              f"{_first_line(exc)}") from None
        self.request = self.compiled.create_infer_request()
        self.device = device
        self.name = "openvino" if device == "CPU" else f"openvino:{device}"
        logger.info("loaded %s with OpenVINO %s on %s", self.path.name, ov.__version__, device)

    def predict(self, rgb: np.ndarray, depth: np.ndarray | None) -> dict[str, np.ndarray]:
        """rgb uint8 N x S x S x 3, depth float32 N x S x S metres (None if RGB-only)."""

        def run(r: np.ndarray, d: np.ndarray | None) -> dict[str, np.ndarray]:
            feeds = {INPUT_RGB: r} if d is None else {INPUT_RGB: r, INPUT_DEPTH: d}
            self.request.infer(feeds)
            # copies: the request's output buffers are reused by the next inference
            return {name: np.array(self.request.get_tensor(name).data) for name in OUTPUTS}

        return run_batched(run, self.info, rgb, depth)

    def close(self) -> None:
        self.request = None
        self.compiled = None


def open_model(path: Path, option: str, threads: int | None) -> OpenVinoBackend:
    """The table's entry point: option is the OpenVINO device (CPU unless openvino:DEVICE)."""
    return OpenVinoBackend(path, option, threads)
