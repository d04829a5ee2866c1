"""The files ``anodet-bench`` measures: exported on demand from the checkpoint, reused while
the checkpoint, anodet version and export settings are unchanged (a stamp file beside each).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

from anodet import __version__

log = logging.getLogger(__name__)

FILES = {"fp32": "model_fp32.onnx", "fp16": "model_fp16.onnx", "int8": "model_int8.onnx",
         "engine": "model_fp16.engine"}


def first_line(exc: BaseException, limit: int = 300) -> str:
    """First line of an exception's message (or its class name), at most ``limit`` characters."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else exc.__class__.__name__)[:limit]


class Artifacts:
    """Exports on demand into ``folder``; reuses a file whose stamp matches; remembers failures."""

    def __init__(self, folder: Path, checkpoint: Path, data: Path, batches: list[int]):
        self.folder, self.checkpoint, self.data, self.batches = folder, checkpoint, data, batches
        self.done: dict[str, dict[str, Any]] = {}  # kind -> {"path", "seconds", "reused", ...} or {"error"}

    def _stamp(self, kind: str) -> dict[str, Any]:
        st = self.checkpoint.stat()
        stamp = {"checkpoint": str(self.checkpoint.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                 "anodet": __version__, "kind": kind}
        if kind == "int8":
            stamp["calib"] = str(self.data.resolve())
        if kind == "engine":
            stamp["batches"] = [1, min(self.batches), max(self.batches)]
        return stamp

    def get(self, kind: str) -> dict[str, Any]:
        if kind not in self.done:
            self.done[kind] = self._make(kind)
        return self.done[kind]

    def _make(self, kind: str) -> dict[str, Any]:
        path = self.folder / FILES[kind]
        stamp_path = path.with_name(path.name + ".stamp.json")
        stamp = self._stamp(kind)
        if path.is_file() and stamp_path.is_file():
            try:
                if json.loads(stamp_path.read_text()) == stamp:
                    log.info("reusing %s", path)
                    return {"path": str(path), "seconds": 0.0, "reused": True, "size_mb": path.stat().st_size / 2**20}
            except ValueError:
                pass
        stamp_path.unlink(missing_ok=True)
        extra: dict[str, Any] = {}
        t0 = time.perf_counter()
        try:
            if kind in ("int8", "engine"):
                base = self.get("fp32" if kind == "int8" else "fp16")
                if "error" in base:
                    return {"error": f"needs the {'FP32' if kind == 'int8' else 'FP16'} ONNX export, which failed: "
                                     f"{base['error']}"}
            log.info("exporting %s -> %s", kind, path)
            if kind in ("fp32", "fp16"):
                from anodet.export.onnx import export_onnx

                res = export_onnx(self.checkpoint, path, batch=None, fp16=kind == "fp16", force=True)
                extra["parity"] = dataclasses.asdict(res.parity)
            elif kind == "int8":
                from anodet.export.quantize import quantize_int8

                q = quantize_int8(base["path"], self.data, path, accept=True, force=True)
                extra["quantize"] = {"fp32_ms": q.fp32_ms, "int8_ms": q.int8_ms, "fp32_auroc": q.fp32_auroc,
                                     "int8_auroc": q.int8_auroc, "calib_images": q.calib_images}
            else:
                from anodet.export.tensorrt import build_engine

                side = build_engine(base["path"], path, fp16=True, min_batch=1, opt_batch=min(self.batches),
                                    max_batch=max(self.batches), timing_cache=self.folder / "trt_timing.cache",
                                    force=True)
                extra["engine"] = {k: side.get(k) for k in ("tensorrt_version", "gpu_name", "precision")}
        except Exception as exc:  # noqa: BLE001 - any export failure is reported in its row
            log.warning("%s export failed: %s", kind, first_line(exc))
            return {"error": first_line(exc)}
        stamp_path.write_text(json.dumps(stamp))
        return {"path": str(path), "seconds": time.perf_counter() - t0, "reused": False,
                "size_mb": path.stat().st_size / 2**20, **extra}
