"""The exported artifact's contract: tensor names and the metadata the runtime reads. Torch-free.

An anodet ONNX file carries one metadata entry, ``anodet`` (JSON), plus a few flat keys for
people reading it with Netron. A TensorRT engine carries the same JSON in its sidecar
``model.engine.json`` under ``"onnx_metadata"``. The runtime reads nothing else.

Graph inputs (batch first, model input size S):
  rgb   uint8   N x S x S x 3   RGB order
  depth float32 N x S x S       metres, 0 = missing (absent for RGB-only models)
Graph outputs:
  score       float32 N          normalised image score; > 0.5 means anomalous
  anomaly_map float32 N x S x S  normalised per-pixel score; > 0.5 is defective
  mask        uint8   N x S x S  1 where anomaly_map > 0.5
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anodet.errors import AnodetError
from anodet.preprocess import PreprocessSpec

INPUT_RGB = "rgb"
INPUT_DEPTH = "depth"
OUTPUT_SCORE = "score"
OUTPUT_MAP = "anomaly_map"
OUTPUT_MASK = "mask"
OUTPUTS = (OUTPUT_SCORE, OUTPUT_MAP, OUTPUT_MASK)
METADATA_KEY = "anodet"
DECISION_THRESHOLD = 0.5  # scores are normalised so that the calibrated threshold maps here


@dataclass(frozen=True)
class ModelInfo:
    """What the runtime needs to know about an exported model."""

    version: str
    preset: str
    in_channels: int
    image_size: int
    preprocess: PreprocessSpec
    raw_threshold: float  # threshold on the un-normalised blurred map
    score_scale: float  # normalised = (raw - raw_threshold) / score_scale + 0.5
    batch: int | None  # fixed batch size, or None for a dynamic batch
    precision: str = "fp32"
    extra: dict[str, Any] = field(default_factory=dict)  # config, fingerprint, stats, ...

    @property
    def needs_depth(self) -> bool:
        return self.in_channels == 4

    @property
    def input_names(self) -> tuple[str, ...]:
        return (INPUT_RGB, INPUT_DEPTH) if self.needs_depth else (INPUT_RGB,)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": "anodet-onnx/1",
                "version": self.version,
                "preset": self.preset,
                "in_channels": self.in_channels,
                "image_size": self.image_size,
                "preprocess": self.preprocess.to_dict(),
                "raw_threshold": self.raw_threshold,
                "score_scale": self.score_scale,
                "decision_threshold": DECISION_THRESHOLD,
                "batch": self.batch,
                "precision": self.precision,
                "inputs": self.input_spec(),
                "outputs": self.output_spec(),
                "extra": self.extra,
            },
            sort_keys=True,
        )

    def input_spec(self) -> list[dict[str, Any]]:
        n, s = self.batch or "N", self.image_size
        spec = [{"name": INPUT_RGB, "dtype": "uint8", "shape": [n, s, s, 3], "layout": "NHWC RGB"}]
        if self.needs_depth:
            spec.append(
                {"name": INPUT_DEPTH, "dtype": "float32", "shape": [n, s, s], "unit": "metre, 0 = missing"}
            )
        return spec

    def output_spec(self) -> list[dict[str, Any]]:
        n, s = self.batch or "N", self.image_size
        return [
            {"name": OUTPUT_SCORE, "dtype": "float32", "shape": [n], "meaning": "> 0.5 anomalous"},
            {"name": OUTPUT_MAP, "dtype": "float32", "shape": [n, s, s], "meaning": "> 0.5 defective"},
            {"name": OUTPUT_MASK, "dtype": "uint8", "shape": [n, s, s], "meaning": "1 = defective"},
        ]


def info_from_json(text: str, source: str = "model") -> ModelInfo:
    """Parse the ``anodet`` metadata entry; raise AnodetError when it is not ours."""
    try:
        raw = json.loads(text)
        if raw.get("format") != "anodet-onnx/1":
            raise ValueError("unknown format")
        return ModelInfo(
            version=raw["version"],
            preset=raw["preset"],
            in_channels=int(raw["in_channels"]),
            image_size=int(raw["image_size"]),
            preprocess=PreprocessSpec.from_dict(raw["preprocess"]),
            raw_threshold=float(raw["raw_threshold"]),
            score_scale=float(raw["score_scale"]),
            batch=raw["batch"],
            precision=raw.get("precision", "fp32"),
            extra=raw.get("extra", {}),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        raise AnodetError(f"{source} is not an anodet export (its anodet metadata is invalid)") from None


def info_from_metadata(metadata: dict[str, str], source: str = "model") -> ModelInfo:
    """Read ModelInfo from an ONNX ``metadata_props`` / ORT ``custom_metadata_map`` dict."""
    if METADATA_KEY not in metadata:
        raise AnodetError(
            f"{source} is not an anodet export (no '{METADATA_KEY}' metadata); "
            "export it with `anodet-export onnx`"
        )
    return info_from_json(metadata[METADATA_KEY], source)


def read_info(path: str | Path) -> ModelInfo:
    """Read ModelInfo from an ``.onnx`` file (via onnxruntime) or an engine's JSON sidecar."""
    path = Path(path)
    if not path.is_file():
        raise AnodetError(f"model file not found: {path}")
    if path.suffix in (".engine", ".plan"):
        sidecar = path.with_name(path.name + ".json")
        if not sidecar.is_file():
            raise AnodetError(f"engine sidecar {sidecar} is missing; rebuild with `anodet-export tensorrt`")
        try:
            meta = json.loads(sidecar.read_text())["onnx_metadata"]
        except (ValueError, KeyError):
            raise AnodetError(f"engine sidecar {sidecar} is corrupt") from None
        return info_from_metadata(meta, str(path))
    try:
        import onnxruntime as ort
    except ImportError:
        raise AnodetError("onnxruntime is not installed: pip install 'anodet[onnx]'") from None
    try:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types for invalid models
        raise AnodetError(f"{path} is not a readable ONNX model ({exc.__class__.__name__})") from None
    return info_from_metadata(sess.get_modelmeta().custom_metadata_map, str(path))
