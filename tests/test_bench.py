"""anodet-bench: the row table, percentiles, MAC counting, the seed reference, tiny end-to-end runs
on a machine without a GPU (GPU rows skip with their reason) and the exit status."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from anodet.bench import rows as rowmod
from anodet.bench.core import bench, exit_status
from anodet.bench.report import format_table
from anodet.bench.rows import ROW_NAMES, ROWS, select_rows
from anodet.bench.timing import measure, percentile, summarize
from anodet.cli import bench_cmd
from anodet.errors import AnodetError

GPU_ROWS = ["onnx-cuda", "onnx-trt", "tensorrt", "torch-cuda", "torch-cuda-fp16"]


@pytest.fixture
def no_gpu(monkeypatch):
    """Every machine behaves as one without a GPU (no minutes-long engine builds on GPU hosts)."""
    monkeypatch.setattr(rowmod, "has_gpu", lambda: False)


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


def test_measure_times_only_the_call(monkeypatch):
    from anodet.bench import timing

    clock = [0.0]  # a fake clock: the test measures what is timed, not how fast this machine is
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=lambda: clock[0]))

    def build(i):
        clock[0] += 0.020  # building an input takes 20 ms and must not be counted
        return (i,)

    calls = []

    def fn(x):
        calls.append(x)
        clock[0] += 0.005

    times = measure(fn, warmup=2, runs=3, inputs=build)
    assert calls == [0, 1, 2, 3, 4] and times == pytest.approx([5.0, 5.0, 5.0])


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




def test_row_table():
    assert len(set(ROW_NAMES)) == len(ROWS)
    assert {r.name for r in ROWS if r.gpu} >= set(GPU_ROWS) and not any(r.gpu for r in select_rows(["onnx-cpu"]))
    assert {r.precision for r in ROWS} == {"fp32", "fp16", "int8"}
    assert all(r.artifact in ("checkpoint", "fp32", "fp16", "int8", "engine") for r in ROWS)
    assert [r.name for r in select_rows(["onnx-cpu", " torch", "onnx-cpu"])] == ["onnx-cpu", "torch"]
    with pytest.raises(AnodetError, match="valid: torch, torch-seed, onnx-cpu"):
        select_rows(["onnx-cpu", "tflite"])


def test_bad_input(tmp_path, trained, synth_data, exported):
    ckpt = trained / "checkpoints" / "best.pt"
    with pytest.raises(AnodetError, match="does not exist"):
        bench(ckpt, data=tmp_path / "nope", backends=["onnx-cpu"], out=tmp_path / "o")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(AnodetError, match="not writable|not a directory"):
        bench(ckpt, data=synth_data, backends=["onnx-cpu"], out=blocker / "sub")
    with pytest.raises(AnodetError, match="batch"):
        bench(ckpt, data=synth_data, backends=["onnx-cpu"], batches=[0], out=tmp_path / "o")
    with pytest.raises(AnodetError, match="two fp32 models"):
        bench(None, models=[exported, exported], data=synth_data, backends=["onnx-cpu"], out=tmp_path / "o")


def test_exit_status():
    def result(*statuses):
        return {"rows": [{"status": s} for s in statuses]}

    assert exit_status(result("ok", "skipped", "failed")) == 0
    assert exit_status(result("skipped", "skipped")) == 0  # nothing could run here: not an error
    assert exit_status(result("ok", "parity failed")) == 1
    assert exit_status(result("failed", "skipped", "failed")) == 1


def test_tiny_bench_without_gpu(tmp_path, trained, synth_data, no_gpu):
    out = tmp_path / "bench"
    names = ["torch", "onnx-cpu", "onnx-fp16", *GPU_ROWS]
    result = bench(trained / "checkpoints" / "best.pt", data=synth_data, backends=names, batches=(1, 2),
                   warmup=1, runs=3, out=out)
    assert exit_status(result) == 0
    rows = {r["name"]: r for r in json.loads((out / "bench.json").read_text())["rows"]}
    assert list(rows) == names
    for name in GPU_ROWS:
        assert rows[name]["status"] == "skipped" and "no NVIDIA GPU" in rows[name]["reason"]
    for name in ("torch", "onnx-cpu", "onnx-fp16"):
        row = rows[name]
        assert row["status"] == "ok", row
        assert [lat["batch"] for lat in row["latency"]] == [1, 2]
        for lat in row["latency"]:
            assert len(lat["times_ms"]) == 3
            assert 0 < lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"]
            assert lat["p50_ms_per_frame"] == pytest.approx(lat["p50_ms"] / lat["batch"])
        assert 0.0 <= row["image_auroc"] <= 1.0 and 0.0 <= row["au_pro"] <= 1.0
        assert row["peak_rss_mb"] > 0 and row["size_mb"] > 0
        assert row["parity"]["ok"] and row["parity"]["frames"] == 8
    assert rows["onnx-cpu"]["parity"]["max_abs_map"] == 0.0  # the reference itself
    assert rows["torch"]["parity"]["tolerance"] == 1e-3 and rows["onnx-fp16"]["parity"]["tolerance"] == 5e-2
    assert rows["onnx-cpu"]["torch_loaded"] is False  # the ONNX row measures a torch-free process
    assert rows["onnx-cpu"]["image_auroc"] == pytest.approx(rows["torch"]["image_auroc"], abs=1e-6)

    data = json.loads((out / "bench.json").read_text())
    assert data["parity_reference"]["frames"] == 8 and data["settings"]["runs"] == 3
    names = [s["name"] for s in data["stages"]["stages"]]
    assert "backbone" in names and "autoencoder" in names and data["stages"]["seed"]["total_gmac"] > 0
    md = (out / "bench.md").read_text()
    assert "| backend | runs on | precision | status |" in md and "skipped (no NVIDIA GPU" in md
    assert "ok 0.0e+00 (bound 0.001)" in md and "## Machine" in md and "## Where the time goes" in md
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert format_table(result).count("\n| torch |") == 1


def _perturbed_fp16(checkpoint, path):
    """An FP16 export whose first convolution weights are tripled: it must disagree."""
    import onnx
    from onnx import numpy_helper

    from anodet.export.onnx import export_onnx

    export_onnx(checkpoint, path, batch=None, fp16=True, force=True)
    model = onnx.load(str(path))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    init = next(i for i in model.graph.initializer if i.name == conv.input[1])
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 3, init.name))
    onnx.save(model, str(path))
    return path


def test_cli_exit_status_from_files(tmp_path, trained, synth_data, exported, no_gpu):
    bad = _perturbed_fp16(trained / "checkpoints" / "best.pt", tmp_path / "bad_fp16.onnx")
    common = ["--data", str(synth_data), "--warmup", "0", "--runs", "1"]
    res = CliRunner().invoke(bench_cmd, ["--model", str(exported), "--model", str(bad), "--backends",
                                         "onnx-cpu,onnx-fp16,torch", *common, "--out", str(tmp_path / "a")])
    assert res.exit_code == 1, res.output
    rows = {r["name"]: r for r in json.loads((tmp_path / "a" / "bench.json").read_text())["rows"]}
    assert rows["onnx-cpu"]["status"] == "ok" and rows["onnx-fp16"]["status"] == "parity failed"
    assert rows["onnx-fp16"]["parity"]["ok"] is False and "FAIL" in res.output
    assert rows["torch"]["status"] == "skipped" and "checkpoint" in rows["torch"]["reason"]

    res = CliRunner().invoke(bench_cmd, ["--model", str(exported), "--backends", ",".join(GPU_ROWS), *common,
                                         "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output  # GPU rows skip cleanly on a machine without one
    assert res.output.count("skipped (no NVIDIA GPU") == len(GPU_ROWS)

    res = CliRunner().invoke(bench_cmd, ["--model", str(exported), "--backends", "tensorrt,tflite", *common,
                                         "--out", str(tmp_path / "c")])
    assert res.exit_code == 2 and "error: unknown backend(s) tflite" in res.output


@pytest.mark.gpu
def test_gpu_rows_agree_with_onnx_cpu(tmp_path, trained, synth_data):
    """On a GPU machine: every GPU row that can run here runs, and agrees with ONNX Runtime CPU."""
    runnable = [r.name for r in select_rows(GPU_ROWS) if rowmod.unavailable_reason(r) is None]
    if not runnable:
        pytest.skip("no GPU row can run here (no NVIDIA GPU, or no CUDA torch/onnxruntime-gpu/TensorRT)")
    result = bench(trained / "checkpoints" / "best.pt", data=synth_data, backends=["onnx-cpu", *runnable],
                   batches=(1, 4), warmup=2, runs=5, out=tmp_path / "bench")
    rows = {r["name"]: r for r in result["rows"]}
    for name in runnable:
        assert rows[name]["status"] == "ok" and rows[name]["parity"]["ok"], rows[name]
    assert exit_status(result) == 0
