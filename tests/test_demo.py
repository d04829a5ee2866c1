"""`make demo` (anodet.demo) on tiny settings, RGB-only included."""

from __future__ import annotations

from click.testing import CliRunner

from anodet.demo import decision_summary, main


def test_demo_runs_with_an_rgb_only_preset(tmp_path):
    # RGB-only presets (rgb_baseline, rgb_lite) used to die at the latency step: the parity
    # samples hold no depth (None). rgb_lite because its layer1-3 fit a PCA on 8 images at 64 px.
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["--out", str(out), "--preset", "rgb_lite", "--weights", "none",
                                       "--size", "64", "--train-images", "8", "--test-per-type", "2",
                                       "--epochs", "2", "--frames", "4"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Traceback" not in result.output
    assert "seeded random init" in result.output
    assert "defective parts caught (recall)" in result.output
    assert "good parts flagged (false-alarm rate)" in result.output
    assert "ONNX Runtime CPU, session.run" in result.output
    assert (out / "model.onnx").is_file()


def test_decision_summary_states_recall_and_false_alarms():
    metrics = {"num_anomalous": 30, "num_normal": 10, "image_recall": 0.9, "image_false_alarm_rate": 0.1,
               "per_defect": {"crack": {"image_recall": 1.0}, "colour": {"image_recall": 0.8}}}
    text = decision_summary(metrics)
    assert "90% of 30 defective parts caught" in text
    assert "10% of 10 good parts flagged" in text
    assert text.index("colour") < text.index("crack")
