"""The files ``anodet-bench`` runs: given (``--model``) or made on demand from the checkpoint.

How each kind is made: fp32 and fp16 ONNX by ``anodet-export onnx`` from the checkpoint, int8
by quantizing the fp32 file on the data, the TensorRT engine by building the fp16 file. A made
file is reused while the checkpoint, anodet version and settings are unchanged (a stamp file
beside it); a failure is remembered and reported in every row that needs the file.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from anodet import __version__
from anodet.artifact import is_engine, read_info
from anodet.errors import AnodetError

log = logging.getLogger(__name__)

FILES = {"fp32": "model_fp32.onnx", "fp16": "model_fp16.onnx", "int8": "model_int8.onnx",
         "engine": "model_fp16.engine"}
SOURCE = {"int8": "fp32", "engine": "fp16"}  # the file each derived kind is made from


def first_line(exc: BaseException, limit: int = 300) -> str:
    """First line of an exception's message (or its class name), at most ``limit`` characters."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else exc.__class__.__name__)[:limit]


def classify(models: Sequence[str | Path]) -> dict[str, Path]:
    """{kind: path} for given exported files: engines by suffix, ONNX by their metadata precision."""
    given: dict[str, Path] = {}
    for m in map(Path, models):
        if not m.is_file():
            raise AnodetError(f"model file {m} not found")
        kind = "engine" if is_engine(m) else read_info(m).precision
        if kind in given:
            raise AnodetError(f"two {kind} models given ({given[kind]}, {m}); give one of each kind")
        given[kind] = m
    return given


class Artifacts:
    """Given files, or exports into ``folder`` on demand; remembers failures."""

    def __init__(self, folder: Path, checkpoint: Path | None, data: Path, batches: list[int],
                 given: dict[str, Path]):
        self.folder, self.checkpoint, self.data, self.batches = folder, checkpoint, data, batches
        self.done: dict[str, dict[str, Any]] = {  # kind -> {"path", "size_mb", ...} or {"error"}/{"missing"}
            k: {"path": str(p), "size_mb": p.stat().st_size / 2**20, "given": True} for k, p in given.items()}

    def get(self, kind: str) -> dict[str, Any]:
        if kind not in self.done:
            self.done[kind] = self._make(kind)
        return self.done[kind]

    def _stamp(self, kind: str, base: dict[str, Any] | None) -> dict[str, Any]:
        """What the file is made from; a file whose stamp differs is made again."""
        src = Path(base["path"]) if base else self.checkpoint
        st = src.stat()
        return {"source": str(src.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "anodet": __version__,
                "kind": kind, "calib": str(self.data.resolve()) if kind == "int8" else None,
                "batches": [1, min(self.batches), max(self.batches)] if kind == "engine" else None}

    def _make(self, kind: str) -> dict[str, Any]:
        base = self.get(SOURCE[kind]) if kind in SOURCE else None
        if base is not None and "path" not in base:  # missing stays missing, a failure stays a failure
            key = "missing" if "missing" in base else "error"
            return {key: f"needs the {SOURCE[kind]} ONNX file: {base[key]}"}
        if self.checkpoint is None and base is None:
            return {"missing": f"needs a checkpoint (--checkpoint) or an {kind.upper()} ONNX file (--model)"}
        path = self.folder / FILES[kind]
        stamp_path = path.with_name(path.name + ".stamp.json")
        stamp = self._stamp(kind, base)
        if path.is_file() and stamp_path.is_file():
            try:
                if json.loads(stamp_path.read_text()) == stamp:
                    log.info("reusing %s", path)
                    return {"path": str(path), "seconds": 0.0, "reused": True, "size_mb": path.stat().st_size / 2**20}
            except ValueError:
                pass
        stamp_path.unlink(missing_ok=True)
        t0 = time.perf_counter()
        try:
            log.info("exporting %s -> %s", kind, path)
            extra = self._build(kind, path, base)
        except Exception as exc:  # noqa: BLE001 - any export failure is reported in its row
            log.warning("%s export failed: %s", kind, first_line(exc))
            return {"error": first_line(exc)}
        stamp_path.write_text(json.dumps(stamp))
        return {"path": str(path), "seconds": time.perf_counter() - t0, "reused": False,
                "size_mb": path.stat().st_size / 2**20, **extra}

    def _build(self, kind: str, path: Path, base: dict[str, Any] | None) -> dict[str, Any]:
        if kind in ("fp32", "fp16"):
            from anodet.export.onnx import export_onnx

            res = export_onnx(self.checkpoint, path, batch=None, fp16=kind == "fp16", force=True)
            return {"parity": dataclasses.asdict(res.parity)}
        if kind == "int8":
            from anodet.export.quantize import quantize_int8

            q = quantize_int8(base["path"], self.data, path, accept=True, force=True)
            return {"quantize": {"fp32_ms": q.fp32_ms, "int8_ms": q.int8_ms, "fp32_auroc": q.fp32_auroc,
                                 "int8_auroc": q.int8_auroc, "calib_images": q.calib_images}}
        from anodet.export.tensorrt import build_engine

        side = build_engine(base["path"], path, fp16=True, min_batch=1, opt_batch=min(self.batches),
                            max_batch=max(self.batches), timing_cache=self.folder / "trt_timing.cache", force=True)
        return {"engine": {k: side.get(k) for k in ("tensorrt_version", "gpu_name", "precision", "build_seconds")}}
