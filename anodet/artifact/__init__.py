"""The exported artifact is the contract; this package owns it. Torch-free.

An anodet ONNX file carries one metadata entry, ``anodet`` (JSON, :class:`ModelInfo`), plus a
few flat keys for people reading it with Netron. A TensorRT engine is the raw plan; its JSON
sidecar ``model.engine.json`` carries the same JSON under ``"onnx_metadata"`` plus where it was
built. The runtime reads nothing else, and every consumer (export parity, the runtime's
backends, ``anodet-bench``, INT8) runs the checks of :mod:`anodet.artifact.checks` instead of
its own. :mod:`anodet.artifact.info` describes the artifact (names, ModelInfo, metadata, sidecar).

Graph inputs (batch first, model input size S):
  rgb   uint8   N x S x S x 3   RGB order
  depth float32 N x S x S       metres, 0 = missing (absent for RGB-only models)
Graph outputs:
  score       float32 N          normalised image score; > DECISION_THRESHOLD means anomalous
  anomaly_map float32 N x S x S  normalised per-pixel score
  mask        uint8   N x S x S  1 where the map exceeds the pixel threshold, in anomalous frames
"""

from anodet.artifact.checks import (
    OutputError,
    Parity,
    RunFn,
    check_inputs,
    check_outputs,
    compare_outputs,
    run_batched,
)
from anodet.artifact.info import (
    DECISION_THRESHOLD,
    ENGINE_SUFFIXES,
    FORMAT,
    INPUT_DEPTH,
    INPUT_RGB,
    METADATA_KEY,
    OUTPUT_MAP,
    OUTPUT_MASK,
    OUTPUT_SCORE,
    OUTPUTS,
    PARITY_TOLERANCE,
    SCHEMA_VERSION,
    SIDECAR_FORMAT,
    SIDECAR_KEYS,
    Calibration,
    ModelInfo,
    info_from_json,
    info_from_metadata,
    is_engine,
    metadata_entries,
    read_info,
    read_onnx_metadata,
    read_sidecar,
    sidecar_path,
    sidecar_problems,
    write_metadata,
)

__all__ = [
    "DECISION_THRESHOLD", "ENGINE_SUFFIXES", "FORMAT", "INPUT_DEPTH", "INPUT_RGB", "METADATA_KEY",
    "OUTPUTS", "OUTPUT_MAP", "OUTPUT_MASK", "OUTPUT_SCORE", "PARITY_TOLERANCE", "SCHEMA_VERSION",
    "SIDECAR_FORMAT", "SIDECAR_KEYS", "Calibration", "ModelInfo", "OutputError", "Parity", "RunFn",
    "check_inputs", "check_outputs", "compare_outputs", "info_from_json", "info_from_metadata",
    "is_engine", "metadata_entries", "read_info", "read_onnx_metadata", "read_sidecar", "run_batched",
    "sidecar_path", "sidecar_problems", "write_metadata",
]
