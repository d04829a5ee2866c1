"""anodet-bench: percentiles, MAC counting, the seed reference and a tiny end-to-end run."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from anodet.bench.core import bench, check_backends
from anodet.bench.report import format_table
from anodet.bench.timing import measure, percentile, summarize
from anodet.errors import AnodetError


def test_percentile_known_values():
    times = list(range(1, 101))  # 1..100 ms, shuffled order must not matter
    rng = np.random.default_rng(0)
    shuffled = [times[i] for i in rng.permutation(100)]
    assert percentile(shuffled, 50) == pytest.approx(50.5)
    assert percentile(shuffled, 95) == pytest.approx(95.05)
    assert percentile(shuffled, 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0
    assert np.isnan(percentile([], 50))
    data = rng.exponential(10.0, size=37)
    for q in (0, 50, 95, 99, 100):
        assert percentile(data, q) == pytest.approx(np.percentile(data, q))
    with pytest.raises(ValueError):
        percentile(data, 101)


def test_summarize_per_frame_and_throughput():
    s = summarize([10.0, 20.0, 30.0, 40.0], batch=2)
    assert s["p50_ms"] == pytest.approx(25.0)
    assert s["p50_ms_per_frame"] == pytest.approx(12.5)
    assert s["throughput_fps"] == pytest.approx(80.0)  # 8 frames in 0.1 s
    assert s["runs"] == 4 and s["p95_ms"] <= s["p99_ms"] <= 40.0


def test_measure_times_only_the_call():
    calls = []
    times = measure(lambda x: calls.append(x), warmup=2, runs=3, inputs=lambda i: (time.sleep(0.02) or i,))
    assert calls == [0, 1, 2, 3, 4] and len(times) == 3
    assert max(times) < 15.0  # the 20 ms spent building each input is not counted


def test_conv_macs_counts_modules_and_functional_convs():
    import torch

    from anodet.bench.stages import ConvMacCounter

    conv = torch.nn.Conv2d(4, 8, 3, padding=1, groups=2)
    with ConvMacCounter() as c:
        conv(torch.zeros(1, 4, 10, 10))
        torch.nn.functional.conv2d(torch.zeros(2, 3, 5, 5), torch.zeros(6, 3, 1, 1))
    assert c.macs == 800 * 2 * 3 * 3 + 2 * 6 * 25 * 3


def test_conv_macs_match_published_resnet18():
    import torch

    from anodet.bench.stages import ConvMacCounter
    from anodet.models.backbone import Backbone

    net = Backbone("resnet18", 3, ("layer1", "layer2", "layer3", "layer4"), "none")
    with torch.no_grad(), ConvMacCounter() as c:
        net(torch.zeros(1, 3, 224, 224))
    assert 1.80e9 < c.macs < 1.83e9  # torchvision: 1.81 GFLOPS (multiply-adds) incl. the tiny fc


def test_seed_reference_has_the_seed_widths():
    from anodet.bench.stages import seed_config
    from anodet.config import PRESETS
    from anodet.models.detector import Detector

    det = Detector(seed_config(PRESETS["rgbd_full"]))
    assert det.aligner.channels == 1920 and not det.aligner.reduce_first
    assert det.autoencoder.widths == [1920, 1088, 256, 128]


def test_bad_input(tmp_path, trained, synth_data):
    ckpt = trained / "checkpoints" / "best.pt"
    with pytest.raises(AnodetError, match="valid: torch, torch-seed, onnx-cpu"):
        check_backends(["onnx-cpu", "openvino"])
    with pytest.raises(AnodetError, match="does not exist"):
        bench(ckpt, data=tmp_path / "nope", backends=["onnx-cpu"], out=tmp_path / "o")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(AnodetError, match="not writable|not a directory"):
        bench(ckpt, data=synth_data, backends=["onnx-cpu"], out=blocker / "sub")
    with pytest.raises(AnodetError, match="batch"):
        bench(ckpt, data=synth_data, backends=["onnx-cpu"], batches=[0], out=tmp_path / "o")


def test_tiny_bench_writes_report(tmp_path, trained, synth_data, monkeypatch):
    from anodet.bench import core

    real = core.unavailable_reason
    # Deterministic everywhere (and no minutes-long engine build on GPU machines).
    monkeypatch.setattr(core, "unavailable_reason",
                        lambda b: "tensorrt not installed" if b == "tensorrt" else real(b))
    out = tmp_path / "bench"
    result = bench(trained / "checkpoints" / "best.pt", data=synth_data,
                   backends=["torch", "onnx-cpu", "tensorrt"], batches=(1, 2), warmup=1, runs=3, out=out)

    rows = {r["name"]: r for r in json.loads((out / "bench.json").read_text())["rows"]}
    assert rows["tensorrt"]["status"] == "not available" and "tensorrt" in rows["tensorrt"]["reason"]
    for name in ("torch", "onnx-cpu"):
        row = rows[name]
        assert row["status"] == "ok", row
        assert [lat["batch"] for lat in row["latency"]] == [1, 2]
        for lat in row["latency"]:
            assert len(lat["times_ms"]) == 3
            assert 0 < lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"]
            assert lat["p50_ms_per_frame"] == pytest.approx(lat["p50_ms"] / lat["batch"])
        assert 0.0 <= row["image_auroc"] <= 1.0 and 0.0 <= row["au_pro"] <= 1.0
        assert row["peak_rss_mb"] > 0 and row["size_mb"] > 0
    assert rows["onnx-cpu"]["torch_loaded"] is False  # the ONNX row measures a torch-free process
    assert rows["onnx-cpu"]["parity"]["max_abs_score"] < 1e-3
    assert rows["onnx-cpu"]["image_auroc"] == pytest.approx(rows["torch"]["image_auroc"], abs=1e-6)

    data = json.loads((out / "bench.json").read_text())
    assert data["machine"]["cpu"] and data["settings"]["runs"] == 3
    names = [s["name"] for s in data["stages"]["stages"]]
    assert "backbone" in names and "autoencoder" in names and data["stages"]["seed"]["total_gmac"] > 0
    assert data["stages"]["ratio_full_to_backbone"]["macs"] >= 1.0

    md = (out / "bench.md").read_text()
    assert "| backend | runs on | status |" in md and "not available on this machine" in md
    assert "3 timed runs after 1 warm-up" in md and "## Machine" in md and "## Where the time goes" in md
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert format_table(result).count("\n| torch |") == 1
