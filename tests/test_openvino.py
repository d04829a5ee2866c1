"""OpenVINO: the runtime backend (ONNX or IR, devices), the IR export (FP32, FP16, INT8 via NNCF)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

ov = pytest.importorskip("openvino")
from click.testing import CliRunner
from fake_model import make_fake_model

from anodet.artifact import read_info
from anodet.cli import export_group, run_cmd
from anodet.errors import AnodetError
from anodet.export.openvino import export_openvino
from anodet.runtime.backends import OnnxRuntimeBackend, open_backend
from anodet.runtime.backends.openvino import OpenVinoBackend, model_metadata

S = 32


@pytest.fixture
def fake(tmp_path):
    return make_fake_model(tmp_path / "fake.onnx", image_size=S)


def _batch(n=5, seed=0):
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 255, (n, S, S, 3), dtype=np.uint8)
    return rgb, rng.uniform(0.45, 0.55, (n, S, S)).astype(np.float32)


def test_onnx_in_openvino_matches_onnxruntime(fake):
    ovb, ort = open_backend(fake, "openvino"), OnnxRuntimeBackend(fake, "cpu")
    assert isinstance(ovb, OpenVinoBackend) and ovb.name == "openvino" and ovb.info == ort.info
    got, want = ovb.predict(*_batch()), ort.predict(*_batch())
    assert np.abs(got["anomaly_map"] - want["anomaly_map"]).max() <= 1e-5
    assert np.array_equal(got["mask"], want["mask"]) and got["score"].dtype == np.float32


def test_fp16_ir_round_trip(fake, tmp_path):
    xml = tmp_path / "ir" / "model.xml"
    report = export_openvino(fake, xml, precision="fp16")
    assert report.path == xml and xml.with_suffix(".bin").is_file()
    backend = open_backend(xml)  # auto picks OpenVINO for an IR
    assert backend.name == "openvino" and backend.info.precision == "fp16"
    assert backend.info.image_size == read_info(fake).image_size
    got, want = backend.predict(*_batch()), OnnxRuntimeBackend(fake, "cpu").predict(*_batch())
    assert np.abs(got["score"] - want["score"]).max() <= 5e-2
    with pytest.raises(AnodetError, match="exists"):
        export_openvino(fake, xml)


def test_ir_without_bin_is_one_line_error(fake, tmp_path):
    xml = tmp_path / "model.xml"
    export_openvino(fake, xml, precision="fp32")
    xml.with_suffix(".bin").unlink()
    with pytest.raises(AnodetError, match="no weights file model.bin"):
        open_backend(xml, "openvino")
    res = CliRunner().invoke(run_cmd, ["--model", str(xml), "--source", "synthetic:2"])
    assert res.exit_code == 2 and res.output.count("error:") == 1 and "model.bin" in res.output


def test_unknown_device_lists_the_available_ones(fake):
    with pytest.raises(AnodetError, match=r"device 'NPU' is not available.*available: CPU"):
        open_backend(fake, "openvino:NPU")
    res = CliRunner().invoke(run_cmd, ["--model", str(fake), "--backend", "openvino:TPU", "--source", "synthetic:2"])
    assert res.exit_code == 2 and res.output.startswith("error: OpenVINO device 'TPU'")
    assert open_backend(fake, "openvino:AUTO").name == "openvino:AUTO"  # virtual devices pass through
    with pytest.raises(AnodetError, match="unknown backend 'onnx-cpu:GPU'"):
        open_backend(fake, "onnx-cpu:GPU")


def test_non_anodet_and_wrong_files_refused(tmp_path, fake):
    plain = make_fake_model(tmp_path / "plain.onnx", image_size=S, metadata=False)
    with pytest.raises(AnodetError, match="not an anodet export"):
        OpenVinoBackend(plain)
    with pytest.raises(AnodetError, match="not an anodet export"):
        model_metadata(ov.Core().read_model(str(plain)), "plain")
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(AnodetError, match="not m.pt"):
        OpenVinoBackend(tmp_path / "m.pt")
    with pytest.raises(AnodetError, match="must be an OpenVINO IR .xml"):
        export_openvino(fake, tmp_path / "m.onnx")
    with pytest.raises(AnodetError, match="INT8 needs --calib"):
        export_openvino(fake, tmp_path / "m.xml", precision="int8")


def test_int8_through_nncf_refits_threshold_and_runs_int8(exported, synth_data, tmp_path):
    from anodet.data.arrays import load_arrays
    from anodet.data.samples import discover

    xml = tmp_path / "m8.xml"
    report = export_openvino(exported, xml, precision="int8", calib=synth_data, images=8, accept=True)
    assert report.path == xml and report.int8 is not None and report.int8.int8_ms > 0
    assert report.int8.recalibration is not None and report.int8.recalibration.images > 0
    assert report.runtime_parity is not None and report.runtime_parity.frames > 0
    assert any(op.get_type_name() == "FakeQuantize" for op in ov.Core().read_model(str(xml)).get_ops())
    backend = OpenVinoBackend(xml)
    info = backend.info
    assert info.precision == "int8" and info.extra["int8_recalibration"]["quantizer"] == "nncf"
    cfg = info.extra["config"]
    ds = discover(synth_data, val_fraction=cfg["data"]["val_fraction"], seed=cfg["train"]["seed"])
    rgb, depth = load_arrays(ds.val, info.preprocess, need_depth=True)
    scores = backend.predict(rgb, depth)["score"]
    # the refit puts the held-out normals' quantile on the decision line (in OpenVINO's INT8 too)
    assert np.quantile(scores, cfg["train"]["threshold_quantile"]) == pytest.approx(0.5, abs=2e-2)


def test_int8_refused_on_accuracy_drop_writes_nothing(exported, synth_data, tmp_path):
    xml = tmp_path / "m8.xml"
    res = CliRunner().invoke(export_group, ["openvino", "--model", str(exported), "-o", str(xml),
                                            "--precision", "int8", "--calib", str(synth_data), "--images", "4",
                                            "--max-auroc-drop", "-1"])
    assert res.exit_code == 2 and "not written" in res.output.splitlines()[-1]
    assert not xml.exists() and not xml.with_suffix(".bin").exists()


def test_nncf_preset_reaches_nncf_and_unknown_is_refused(exported, synth_data, tmp_path, monkeypatch):
    import nncf

    seen, quantize = [], nncf.quantize

    def spy(*args, **kwargs):
        seen.append(kwargs.get("preset"))
        return quantize(*args, **kwargs)

    monkeypatch.setattr(nncf, "quantize", spy)
    xml = tmp_path / "m8.xml"
    res = CliRunner().invoke(export_group, ["openvino", "--model", str(exported), "-o", str(xml), "--precision",
                                            "int8", "--calib", str(synth_data), "--images", "4", "--accept-drop",
                                            "--keep-fp32", "stem,layer1", "--nncf-preset", "mixed"])
    assert res.exit_code == 0, res.output
    assert seen == [nncf.QuantizationPreset.MIXED] and xml.exists()
    with pytest.raises(AnodetError, match="unknown NNCF preset"):
        export_openvino(exported, tmp_path / "x.xml", precision="int8", calib=synth_data, nncf_preset="fast")


def test_runtime_backends_stay_torch_free():
    code = ("import sys\n"
            "import anodet.runtime.backends.openvino, anodet.runtime.backends.triton, anodet.serve.triton_model\n"
            "import openvino\n"
            "from anodet.runtime import run\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
