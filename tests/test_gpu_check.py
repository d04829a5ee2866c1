"""benchmarks/gpu_check.py on a machine without a GPU: the CPU reference runs, GPU rows say why."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_without_gpu_reports_skips(exported, trained, synth_data, tmp_path):
    out = tmp_path / "gpu"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--model", str(exported),
         "--checkpoint", str(trained / "checkpoints" / "best.pt"), "--data", str(synth_data / "test"),
         "--samples", "4", "--batches", "1,2", "--warmup", "1", "--runs", "3", "--out", str(out)],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "gpu_check.json").read_text())
    rows = {r["backend"] + " " + r["precision"]: r for r in report["rows"]}
    ref = rows["onnxruntime CPU (reference) fp32"]
    assert ref["status"] == "ok" and ref["parity"]["max_abs_map"] == 0.0
    assert ref["timing"]["1"]["p50_ms"] > 0 and ref["timing"]["2"]["images_per_s"] > 0  # JSON keys
    others = [r for r in report["rows"] if r is not ref]
    assert others and all(r["status"] == "skipped" and r["reason"] for r in others)
    assert report["verdict"] == "no engine ran" and report["data"] == "real"
    assert "| onnxruntime CPU (reference) | fp32 | ok |" in (out / "gpu_check.md").read_text()
