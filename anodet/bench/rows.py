"""The rows of ``anodet-bench``: one table of row definitions drives what is built, run and checked.

Each row names the artifact it runs (a checkpoint, an FP32/FP16/INT8 ONNX file or a TensorRT
engine; ``anodet.bench.artifacts`` knows how to make each), the engine that runs it (PyTorch or
a row of the backend table, ``anodet.runtime.backends.TABLE``, which also tells whether it needs
a GPU, the precisions it runs and how to install it), its precision and its device. Every row
is compared with ONNX Runtime CPU running the FP32 ONNX file (``anodet.artifact.compare_outputs``
at the row's precision bound). Torch-free: the checks below import nothing heavy.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass

from anodet.errors import AnodetError
from anodet.runtime.backends import choice, table

TORCH = "torch"  # the one engine of a row that is not a runtime backend


@dataclass(frozen=True)
class Row:
    """One way to run a model."""

    name: str
    engine: str  # "torch", or a backend of the table (anodet.runtime.backends.TABLE)
    artifact: str  # "checkpoint" or an anodet.bench.artifacts kind: fp32, fp16, int8, engine
    precision: str  # fp32 / fp16 / int8
    gpu: bool | None = None  # needs an NVIDIA GPU; None: as the backend table says (torch: no)
    gated: bool = True  # parity against ONNX Runtime CPU decides the exit status
    accuracy: bool = True  # evaluate AUROC / AU-PRO on the test split
    seed: bool = False  # the seed-faithful latency reference (random weights)

    def __post_init__(self) -> None:
        if self.engine == TORCH:
            if self.gpu is None:
                object.__setattr__(self, "gpu", False)
            return
        spec = table.backend_spec(self.engine)  # a row on an unknown backend fails at import
        if self.precision not in spec.precisions:
            raise AnodetError(f"row {self.name}: backend {spec.name} runs {spec.precisions}, "
                              f"not {self.precision}")
        if self.gpu is None:
            object.__setattr__(self, "gpu", spec.gpu)


ROWS = (
    Row("torch", "torch", "checkpoint", "fp32"),
    Row("torch-seed", "torch", "checkpoint", "fp32", gated=False, accuracy=False, seed=True),
    Row("onnx-cpu", "onnx-cpu", "fp32", "fp32"),
    Row("onnx-int8", "onnx-cpu", "int8", "int8", gated=False),  # INT8 has its own AUROC bound at export
    Row("onnx-fp16", "onnx-cpu", "fp16", "fp16"),
    Row("openvino", "openvino", "fp32", "fp32"),  # OpenVINO CPU runs the ONNX file directly
    Row("openvino-int8", "openvino", "int8", "int8", gated=False),  # the INT8 (QDQ) file in OpenVINO
    Row("onnx-cuda", "onnx-cuda", "fp32", "fp32"),
    Row("onnx-cuda-fp16", "onnx-cuda", "fp16", "fp16"),
    Row("onnx-trt", "onnx-trt", "fp32", "fp32"),
    Row("tensorrt", "tensorrt", "engine", "fp16"),
    Row("torch-cuda", "torch", "checkpoint", "fp32", gpu=True),
    Row("torch-cuda-fp16", "torch", "checkpoint", "fp16", gpu=True),
)
ROW_NAMES = tuple(r.name for r in ROWS)
REFERENCE = "torch-seed"  # speed-ups are relative to this row at batch 1
REFERENCE_BACKEND = "onnx-cpu"  # parity is against this backend on the FP32 ONNX file
_BY_NAME = {r.name: r for r in ROWS}


def select_rows(names: Sequence[str]) -> list[Row]:
    """The rows named (deduplicated, in the given order); AnodetError naming the valid ones."""
    names = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        raise AnodetError(f"unknown backend(s) {', '.join(unknown)}; valid: {', '.join(ROW_NAMES)}")
    return [_BY_NAME[n] for n in names]


@functools.cache  # nvidia-smi takes a while; asked once per GPU row otherwise
def has_gpu() -> bool:
    """Whether nvidia-smi lists an NVIDIA GPU here."""
    from anodet.bench.report import gpus

    return bool(gpus())


def unavailable_reason(row: Row) -> str | None:
    """Why ``row`` cannot run on this machine, or None when it can (as far as we can tell)."""
    if row.gpu and not has_gpu():
        return "no NVIDIA GPU on this machine (nvidia-smi lists none)"
    if row.engine == TORCH:
        if importlib.util.find_spec("torch") is None:
            return "torch not installed (pip install 'anodet[train]')"
        if row.gpu:
            import torch

            if not torch.cuda.is_available():
                return f"this PyTorch ({torch.__version__}) has no CUDA device"
        return None
    # the backend's engine, then ONNX Runtime CPU: every row is compared with it
    return choice.unavailable_reason(row.engine) or choice.unavailable_reason(REFERENCE_BACKEND)
