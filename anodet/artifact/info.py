"""The artifact's description: names, ModelInfo, ONNX metadata and the engine sidecar. Torch-free.

The contract itself is described in :mod:`anodet.artifact`; this module holds its data.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
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
FORMAT = "anodet-onnx/1"
SCHEMA_VERSION = 4  # bump when a reader of the old schema would misread the new one
# 4 added preprocess.depth_relief_sigma; a schema-3 artifact is read as relief off, which it ran with.
OLDEST_SCHEMA = 3
DECISION_THRESHOLD = 0.5  # scores are normalised so that the calibrated threshold maps here
ENGINE_SUFFIXES = (".engine", ".plan")
SIDECAR_FORMAT = "anodet-engine/1"
SIDECAR_KEYS = ("tensorrt_version", "compute_capability", "onnx_metadata", "inputs", "outputs")
# max |difference| of score and map against the reference, per precision of the exported graph
PARITY_TOLERANCE = {"fp32": 1e-3, "fp16": 5e-2}


@dataclass(frozen=True)
class Calibration:
    """How the threshold was fitted, so INT8 recalibration refits it the same way."""

    val_fraction: float  # share of the training split held out when no validation split exists
    seed: int  # split seed
    threshold_method: str  # anodet.calibration.THRESHOLD_METHODS
    threshold_quantile: float
    pixel_fpr: float | None = None  # the mask's per-pixel false-positive budget (None: image threshold)
    # z16 steps (metres) the held-out normals were also re-rounded to (train.depth_augment_units):
    # a refit without those copies would set the threshold lower than training did.
    depth_augment_units: tuple[float, ...] = ()


@dataclass(frozen=True)
class ModelInfo:
    """What the runtime needs to know about an exported model."""

    version: str
    preset: str
    in_channels: int
    image_size: int
    preprocess: PreprocessSpec
    raw_threshold: float  # threshold on the un-normalised blurred map
    score_scale: float  # normalised = (raw - raw_threshold) / score_scale + DECISION_THRESHOLD
    batch: int | None  # fixed batch size, or None for a dynamic batch
    calibration: Calibration
    pixel_raw_threshold: float | None = None  # the mask's threshold on the raw map (None: raw_threshold)
    mask_peak_share: float = 0.0  # the mask also needs this share of the way to the frame's peak
    input_stats: dict[str, Any] = field(default_factory=dict)  # training frames, anodet.drift.input_stats
    precision: str = "fp32"
    schema: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # config, fingerprint, stats, ...

    @property
    def needs_depth(self) -> bool:
        return self.in_channels == 4

    @property
    def pixel_threshold(self) -> float:
        """The mask's threshold in normalised map units (the image threshold is DECISION_THRESHOLD)."""
        raw = self.raw_threshold if self.pixel_raw_threshold is None else self.pixel_raw_threshold
        return (raw - self.raw_threshold) / self.score_scale + DECISION_THRESHOLD

    @property
    def input_names(self) -> tuple[str, ...]:
        return (INPUT_RGB, INPUT_DEPTH) if self.needs_depth else (INPUT_RGB,)

    def to_json(self) -> str:
        raw = asdict(self)
        raw.update(format=FORMAT, decision_threshold=DECISION_THRESHOLD, inputs=self.input_spec(),
                   outputs=self.output_spec())
        return json.dumps(raw, sort_keys=True)

    def input_spec(self) -> list[dict[str, Any]]:
        n, s = self.batch or "N", self.image_size
        spec = [{"name": INPUT_RGB, "dtype": "uint8", "shape": [n, s, s, 3], "layout": "NHWC RGB"}]
        if self.needs_depth:
            spec.append({"name": INPUT_DEPTH, "dtype": "float32", "shape": [n, s, s],
                         "unit": "metre, 0 = missing"})
        return spec

    def output_spec(self) -> list[dict[str, Any]]:
        n, s = self.batch or "N", self.image_size
        return [
            {"name": OUTPUT_SCORE, "dtype": "float32", "shape": [n], "meaning": "> 0.5 anomalous"},
            {"name": OUTPUT_MAP, "dtype": "float32", "shape": [n, s, s], "meaning": "normalised pixel score"},
            {"name": OUTPUT_MASK, "dtype": "uint8", "shape": [n, s, s],
             "meaning": "1 = defective (map > pixel threshold, anomalous frames only)"},
        ]


def _calibration(raw: dict[str, Any]) -> Calibration:
    units = tuple(float(u) for u in raw.get("depth_augment_units", ()))
    return Calibration(**{**raw, "depth_augment_units": units})


def info_from_json(text: str, source: str = "model") -> ModelInfo:
    """Parse the ``anodet`` metadata entry; AnodetError when it is not ours or too new."""
    try:
        raw = json.loads(text)
        ok = isinstance(raw, dict) and raw.get("format") == FORMAT
    except ValueError:
        ok = False
    if not ok:
        raise AnodetError(f"{source} is not an anodet export (its anodet metadata is invalid)")
    schema = raw.get("schema", 1)
    if not isinstance(schema, int) or schema > SCHEMA_VERSION:
        raise AnodetError(
            f"{source} was written by anodet {raw.get('version', '?')} with artifact schema {schema}; "
            f"this anodet reads schema {SCHEMA_VERSION} and older: upgrade anodet"
        )
    if schema < OLDEST_SCHEMA:
        raise AnodetError(
            f"{source} uses artifact schema {schema} (anodet {raw.get('version', '?')}); this anodet "
            f"reads schema {OLDEST_SCHEMA} to {SCHEMA_VERSION}: export it again with `anodet-export onnx`"
        )
    try:
        return ModelInfo(
            version=str(raw["version"]), preset=str(raw["preset"]), in_channels=int(raw["in_channels"]),
            image_size=int(raw["image_size"]), preprocess=PreprocessSpec.from_dict(raw["preprocess"]),
            raw_threshold=float(raw["raw_threshold"]), score_scale=float(raw["score_scale"]),
            batch=None if raw["batch"] is None else int(raw["batch"]),
            calibration=_calibration(raw["calibration"]), precision=str(raw["precision"]),
            pixel_raw_threshold=None if raw.get("pixel_raw_threshold") is None
            else float(raw["pixel_raw_threshold"]),
            input_stats=dict(raw.get("input_stats") or {}), mask_peak_share=float(raw.get("mask_peak_share", 0.0)),
            schema=schema, extra=dict(raw.get("extra", {})),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        raise AnodetError(f"{source} is not an anodet export (its anodet metadata is incomplete)") from None


def info_from_metadata(metadata: dict[str, str], source: str = "model") -> ModelInfo:
    """Read ModelInfo from an ONNX ``metadata_props`` / ORT ``custom_metadata_map`` dict."""
    if METADATA_KEY not in metadata:
        raise AnodetError(
            f"{source} is not an anodet export (no '{METADATA_KEY}' metadata); "
            "export it with `anodet-export onnx`"
        )
    return info_from_json(metadata[METADATA_KEY], source)


def metadata_entries(info: ModelInfo) -> dict[str, str]:
    """The ONNX ``metadata_props`` an anodet export carries (the contract plus readable keys)."""
    return {METADATA_KEY: info.to_json(), "anodet_version": info.version, "preset": info.preset,
            "threshold": f"{DECISION_THRESHOLD} on normalised score/map",
            "inputs": json.dumps(info.input_spec())}


def write_metadata(model: Any, info: ModelInfo) -> None:
    """Replace an ``onnx.ModelProto``'s metadata with ``info``'s entries (in place)."""
    del model.metadata_props[:]
    for key, value in metadata_entries(info).items():
        model.metadata_props.add(key=key, value=value)


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """An ONNX file's ``metadata_props`` (through ``onnx`` where installed, else onnxruntime)."""
    path = Path(path)
    if not path.is_file():
        raise AnodetError(f"model file not found: {path}")
    try:
        import onnx
    except ImportError:  # an edge box has onnxruntime but not onnx
        onnx = None
    try:
        if onnx is not None:
            model = onnx.load(str(path), load_external_data=False)
            return {p.key: p.value for p in model.metadata_props}
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return dict(sess.get_modelmeta().custom_metadata_map)
    except ImportError:
        raise AnodetError("reading an ONNX model needs onnxruntime: pip install 'anodet[onnx]'") from None
    except Exception as exc:  # noqa: BLE001 - protobuf/ORT raise their own types for a damaged file
        raise AnodetError(f"{path} is not a readable ONNX model ({exc.__class__.__name__})") from None


def is_engine(path: str | Path) -> bool:
    return Path(path).suffix.lower() in ENGINE_SUFFIXES


def sidecar_path(engine_path: str | Path) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    path = Path(engine_path)
    return path.with_name(path.name + ".json")


def read_sidecar(engine_path: str | Path) -> dict[str, Any]:
    """An engine's JSON sidecar; AnodetError when it is missing, corrupt or of another format."""
    side = sidecar_path(engine_path)
    if not side.is_file():
        raise AnodetError(f"engine sidecar {side} is missing; rebuild with `anodet-export tensorrt`")
    try:
        data = json.loads(side.read_text())
        if not isinstance(data, dict) or any(k not in data for k in SIDECAR_KEYS):
            raise ValueError("missing keys")
    except (ValueError, OSError):
        raise AnodetError(
            f"engine sidecar {side} is corrupt (expected {', '.join(SIDECAR_KEYS)}); "
            "rebuild with `anodet-export tensorrt`"
        ) from None
    if data.get("format", SIDECAR_FORMAT) != SIDECAR_FORMAT:
        raise AnodetError(
            f"engine sidecar {side} has format {data['format']!r}, this anodet reads "
            f"{SIDECAR_FORMAT!r}; rebuild with `anodet-export tensorrt` or upgrade anodet"
        )
    return data


def sidecar_problems(sidecar: dict[str, Any], *, tensorrt_version: str, compute_capability: str) -> list[str]:
    """Why an engine cannot run here (empty: it can): plans are tied to TensorRT and GPU arch."""
    problems = []
    built = str(sidecar.get("tensorrt_version"))
    if built != str(tensorrt_version):
        problems.append(f"it was built with TensorRT {built} but TensorRT {tensorrt_version} is installed")
    cc = str(sidecar.get("compute_capability"))
    if cc != str(compute_capability):
        gpu = sidecar.get("gpu_name", "another GPU")
        problems.append(f"it was built for compute capability {cc} ({gpu}) but this GPU has {compute_capability}")
    return problems


def read_info(path: str | Path) -> ModelInfo:
    """ModelInfo of an ``.onnx`` file or of an engine (from its sidecar)."""
    path = Path(path)
    if not path.is_file():
        raise AnodetError(f"model file not found: {path}")
    if is_engine(path):
        return info_from_metadata(read_sidecar(path)["onnx_metadata"], str(path))
    return info_from_metadata(read_onnx_metadata(path), str(path))
