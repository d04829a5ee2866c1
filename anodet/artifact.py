"""The exported artifact is the contract; this module owns it. Torch-free.

An anodet ONNX file carries one metadata entry, ``anodet`` (JSON, :class:`ModelInfo`), plus a
few flat keys for people reading it with Netron. A TensorRT engine is the raw plan; its JSON
sidecar ``model.engine.json`` carries the same JSON under ``"onnx_metadata"`` plus where it was
built. The runtime reads nothing else, and every consumer (export parity, the runtime's
backends, ``anodet-bench``, INT8) runs the checks below instead of its own.

Graph inputs (batch first, model input size S):
  rgb   uint8   N x S x S x 3   RGB order
  depth float32 N x S x S       metres, 0 = missing (absent for RGB-only models)
Graph outputs:
  score       float32 N          normalised image score; > DECISION_THRESHOLD means anomalous
  anomaly_map float32 N x S x S  normalised per-pixel score
  mask        uint8   N x S x S  1 where the pixel is defective
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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
SCHEMA_VERSION = 3  # bump when a reader of the old schema would misread the new one
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
    if schema < SCHEMA_VERSION:
        raise AnodetError(
            f"{source} uses artifact schema {schema} (anodet {raw.get('version', '?')}); this anodet "
            f"writes schema {SCHEMA_VERSION}: export it again with `anodet-export onnx`"
        )
    try:
        return ModelInfo(
            version=str(raw["version"]), preset=str(raw["preset"]), in_channels=int(raw["in_channels"]),
            image_size=int(raw["image_size"]), preprocess=PreprocessSpec.from_dict(raw["preprocess"]),
            raw_threshold=float(raw["raw_threshold"]), score_scale=float(raw["score_scale"]),
            batch=None if raw["batch"] is None else int(raw["batch"]),
            calibration=Calibration(**raw["calibration"]), precision=str(raw["precision"]),
            pixel_raw_threshold=None if raw.get("pixel_raw_threshold") is None
            else float(raw["pixel_raw_threshold"]),
            input_stats=dict(raw.get("input_stats") or {}),
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


def check_inputs(info: ModelInfo, rgb: Any, depth: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate a batch against the contract; return C-contiguous rgb uint8 and depth float32.

    Depth of any floating type is cast to float32; depth given to an RGB-only model is dropped
    (sources deliver it whatever the model needs).
    """
    s = info.image_size
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 4 or rgb.shape[1:] != (s, s, 3):
        got = f"{getattr(rgb, 'dtype', type(rgb).__name__)} {getattr(rgb, 'shape', '')}"
        raise AnodetError(f"rgb batch must be uint8 N x {s} x {s} x 3 (RGB order), got {got}")
    if not info.needs_depth:
        return np.ascontiguousarray(rgb), None
    if depth is None:
        raise AnodetError("this model needs depth (float32 N x S x S metres) but none was given")
    if not isinstance(depth, np.ndarray) or not np.issubdtype(depth.dtype, np.floating) \
            or depth.shape != rgb.shape[:3]:
        got = f"{getattr(depth, 'dtype', type(depth).__name__)} {getattr(depth, 'shape', '')}"
        raise AnodetError(f"depth batch must be float32 {rgb.shape[0]} x {s} x {s} (metres, 0 = missing), got {got}")
    return np.ascontiguousarray(rgb), np.ascontiguousarray(depth, dtype=np.float32)


class OutputError(AnodetError):
    """A model ran but its outputs break the contract (shape, type, non-finite values)."""


def check_outputs(out: dict[str, Any], n: int, size: int) -> dict[str, np.ndarray]:
    """Outputs for ``n`` frames in the contract's types; OutputError when they break it.

    Non-finite scores or maps are refused: a NaN score compares False with the threshold and
    would pass a broken frame as a good part.
    """
    want = {OUTPUT_SCORE: ((n,), np.float32), OUTPUT_MAP: ((n, size, size), np.float32),
            OUTPUT_MASK: ((n, size, size), np.uint8)}
    got = {}
    for name, (shape, dtype) in want.items():
        if name not in out:
            raise OutputError(f"model output '{name}' is missing")
        arr = np.asarray(out[name])
        if arr.size != int(np.prod(shape)) or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise OutputError(f"model output '{name}' is {arr.dtype} {arr.shape}, expected {shape}")
        got[name] = arr.reshape(shape).astype(dtype, copy=False)
    if not (np.isfinite(got[OUTPUT_SCORE]).all() and np.isfinite(got[OUTPUT_MAP]).all()):
        raise OutputError("model output holds non-finite scores (NaN or inf)")
    if not np.isin(got[OUTPUT_MASK], (0, 1)).all():
        raise OutputError("model output 'mask' holds values other than 0 and 1")
    return got


RunFn = Callable[[np.ndarray, np.ndarray | None], dict[str, Any]]


def run_batched(run: RunFn, info: ModelInfo, rgb: Any, depth: Any, *, max_batch: int | None = None,
                min_batch: int = 1, check: bool = True) -> dict[str, np.ndarray]:
    """Check inputs, call ``run(rgb, depth)`` per chunk, check and join the outputs.

    A fixed-batch model gets chunks of exactly ``info.batch`` frames; a dynamic one chunks of at
    most ``max_batch`` (None: all at once) and at least ``min_batch``. Short chunks are padded
    by repeating their last frame, whose outputs are dropped. ``check=False`` joins whatever
    ``run`` returns (intermediate tensors) without the output contract's checks.
    """
    rgb, depth = check_inputs(info, rgb, depth)
    n, s = rgb.shape[0], info.image_size
    lo, hi = (info.batch, info.batch) if info.batch else (min_batch, max_batch or max(n, min_batch))
    parts = []
    for start in range(0, n, hi):
        stop = min(n, start + hi)
        idx = np.minimum(np.arange(start, max(stop, start + lo)), stop - 1)
        chunk = run(rgb[idx], None if depth is None else depth[idx])
        chunk = check_outputs(chunk, idx.size, s) if check else {k: np.asarray(v) for k, v in chunk.items()}
        parts.append({k: v[: stop - start] for k, v in chunk.items()})
    if not parts:
        empty = {OUTPUT_SCORE: np.zeros(0), OUTPUT_MAP: np.zeros((0, s, s)), OUTPUT_MASK: np.zeros((0, s, s))}
        return check_outputs(empty, 0, s)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@dataclass(frozen=True)
class Parity:
    """How far a model's outputs are from a reference's on the same frames."""

    frames: int
    max_abs_map: float
    max_abs_score: float
    image_decisions_equal: float  # share of frames with the same decision
    pixel_decisions_equal: float  # share of pixels with the same mask value
    tolerance: float
    ok: bool

    def describe(self) -> str:
        return (f"max |map diff| {self.max_abs_map:.2e}, |score diff| {self.max_abs_score:.2e} (bound "
                f"{self.tolerance:g}), image decisions {self.image_decisions_equal:.0%} equal")


def compare_outputs(reference: dict[str, np.ndarray], other: dict[str, np.ndarray], *,
                    precision: str = "fp32") -> Parity:
    """Compare ``other`` with ``reference`` (the first frames both hold) at a precision's bound.

    ``ok`` needs map and score within ``PARITY_TOLERANCE[precision]`` and the same decision on
    every frame whose reference score is farther than that bound from the threshold (a score
    on the threshold may flip under any rounding).
    """
    if precision not in PARITY_TOLERANCE:
        raise AnodetError(f"no parity bound for precision {precision!r}; valid: {', '.join(PARITY_TOLERANCE)}")
    tol = PARITY_TOLERANCE[precision]
    k = min(len(reference[OUTPUT_SCORE]), len(other[OUTPUT_SCORE]))
    ref = {key: np.asarray(reference[key][:k], np.float64) for key in OUTPUTS}
    got = {key: np.asarray(other[key][:k], np.float64) for key in OUTPUTS}
    if k == 0:
        return Parity(0, 0.0, 0.0, 1.0, 1.0, tol, True)
    diff_map = float(np.abs(ref[OUTPUT_MAP] - got[OUTPUT_MAP]).max())
    diff_score = float(np.abs(ref[OUTPUT_SCORE] - got[OUTPUT_SCORE]).max())
    same = (ref[OUTPUT_SCORE] > DECISION_THRESHOLD) == (got[OUTPUT_SCORE] > DECISION_THRESHOLD)
    clear = np.abs(ref[OUTPUT_SCORE] - DECISION_THRESHOLD) > tol
    ok = bool(np.isfinite([diff_map, diff_score]).all() and diff_map <= tol and diff_score <= tol
              and same[clear].all())
    return Parity(k, diff_map, diff_score, float(same.mean()),
                  float(np.mean(ref[OUTPUT_MASK] == got[OUTPUT_MASK])), tol, ok)
