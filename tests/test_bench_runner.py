"""anodet-bench on a tiny model: table, JSON and plot are written; unavailable rows reported."""

from __future__ import annotations

import json

import cv2
import pytest

from anodet.bench.runner import bench, format_table
from anodet.bench.timing import percentile, summarize
from anodet.errors import AnodetError


def test_percentiles_on_known_timings():
    times = [10.0, 20.0, 30.0, 40.0, 50.0]
    assert percentile(times, 50) == 30.0
    assert percentile(times, 95) == pytest.approx(48.0)
    s = summarize(times, batch=2)
    assert s["p50_ms_per_frame"] == 15.0 and s["throughput_fps"] == pytest.approx(2 * 5 / 0.15)


def test_tiny_bench_writes_table_json_png(trained, synth_data, tmp_path):
    res = bench(trained / "checkpoints" / "best.pt", data=synth_data, backends=["torch", "onnx-cpu", "tensorrt"],
                batches=[1, 2], warmup=1, runs=3, out=tmp_path)
    rows = {r["backend"]: r for r in res["rows"]}
    assert rows["torch"]["status"] == "ok" and rows["onnx-cpu"]["status"] == "ok"
    assert rows["tensorrt"]["status"] == "not available" and "TensorRT" in rows["tensorrt"]["reason"]
    assert [lat["batch"] for lat in rows["onnx-cpu"]["latency"]] == [1, 2]
    assert abs(rows["torch"]["image_auroc"] - rows["onnx-cpu"]["image_auroc"]) <= 0.002
    assert rows["onnx-cpu"]["peak_rss_mb"] > 0 and rows["onnx-cpu"]["size_mb"] > 0
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["machine"]["cores"] >= 1 and len(saved["rows"]) == 3
    md = (tmp_path / "bench.md").read_text()
    assert "| onnx-cpu | ok | 2 |" in md and "not available" in md
    assert cv2.imread(str(tmp_path / "bench.png")) is not None
    assert "torch" in format_table(res)


def test_unknown_backend_lists_valid(trained, synth_data, tmp_path):
    with pytest.raises(AnodetError, match="onnx-int8"):
        bench(trained / "checkpoints" / "best.pt", data=synth_data, backends=["onnx-gpu"], out=tmp_path)
    with pytest.raises(AnodetError, match="does not exist"):
        bench(trained / "checkpoints" / "best.pt", data=tmp_path / "nope", backends=["torch"], out=tmp_path)
