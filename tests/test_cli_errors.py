"""Every user error: one readable line on stderr, exit code 2, no traceback, nothing lost."""

from __future__ import annotations

import os
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from anodet.cli import main


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def assert_user_error(result, *needles):
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def data_copy(synth_data, tmp_path):
    dst = tmp_path / "data"
    shutil.copytree(synth_data, dst)
    return dst


def train(data, out, *extra, config="tiny"):
    return run("train", "--config", config, "--data", data, "--out", out, "--epochs", "1", *extra)


def test_nonexistent_data(tiny_yaml, tmp_path):
    assert_user_error(train(tmp_path / "nope", tmp_path / "o", config=tiny_yaml), "nope")


def test_neither_layout(tiny_yaml, tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    assert_user_error(train(tmp_path / "junk", tmp_path / "o", config=tiny_yaml), "junk")


def test_empty_train_split(tiny_yaml, data_copy, tmp_path):
    for f in (data_copy / "train" / "good" / "rgb").iterdir():
        f.unlink()
    assert_user_error(train(data_copy, tmp_path / "o", config=tiny_yaml))


def test_corrupt_png(tiny_yaml, data_copy, tmp_path):
    victim = min((data_copy / "train" / "good" / "rgb").iterdir())
    victim.write_bytes(b"\x89PNG garbage")
    assert_user_error(train(data_copy, tmp_path / "o", config=tiny_yaml), victim.name)


def test_corrupt_tiff(tiny_yaml, data_copy, tmp_path):
    victim = min((data_copy / "train" / "good" / "xyz").iterdir())
    victim.write_bytes(b"II*\x00 not a tiff")
    assert_user_error(train(data_copy, tmp_path / "o", config=tiny_yaml), victim.name)


def test_rgb_without_depth(tiny_yaml, data_copy, tmp_path):
    victim = min((data_copy / "train" / "good" / "xyz").iterdir())
    victim.unlink()
    assert_user_error(train(data_copy, tmp_path / "o", config=tiny_yaml), victim.stem)


def test_sizes_differ(tiny_yaml, data_copy, tmp_path):
    victim = min((data_copy / "train" / "good" / "rgb").iterdir())
    cv2.imwrite(str(victim), np.zeros((40, 50, 3), np.uint8))
    assert_user_error(train(data_copy, tmp_path / "o", config=tiny_yaml), victim.name)


def test_xyz_wrong_dtype(tiny_yaml, data_copy, tmp_path):
    import tifffile

    victim = min((data_copy / "train" / "good" / "xyz").iterdir())
    tifffile.imwrite(victim, np.ones((64, 64, 3), np.int32), photometric="minisblack", planarconfig="contig")
    assert_user_error(train(data_copy, tmp_path / "o", config=tiny_yaml), victim.name)


def test_depth_all_missing_or_nan(tiny_yaml, data_copy, tmp_path):
    import tifffile

    victim = min((data_copy / "train" / "good" / "xyz").iterdir())
    tifffile.imwrite(victim, np.full((64, 64, 3), np.nan, np.float32), photometric="minisblack", planarconfig="contig")
    assert_user_error(train(data_copy, tmp_path / "o", config=tiny_yaml), "no valid pixel")


def test_unknown_preset(synth_data, tmp_path):
    assert_user_error(train(synth_data, tmp_path / "o", config="fancy"), "rgbd_full, rgb_baseline, rgbd_reduced")


def test_yaml_unknown_key(synth_data, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epoch: 3\n")
    assert_user_error(train(synth_data, tmp_path / "o", config=bad), "epoch")


def test_resume_missing_and_corrupt_checkpoint(tiny_yaml, synth_data, tmp_path):
    out = tmp_path / "o"
    assert_user_error(train(synth_data, out, "--resume", config=tiny_yaml), "last.pt")
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    assert_user_error(train(synth_data, out, "--resume", config=tiny_yaml), "corrupt")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; the file case below still runs")
def test_unwritable_out_dir(tiny_yaml, synth_data, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    assert_user_error(train(synth_data, ro / "o", config=tiny_yaml), "not writable")


def test_out_is_a_file(tiny_yaml, synth_data, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    assert_user_error(train(synth_data, f, config=tiny_yaml), "not a directory")


def test_bad_weights_option(tiny_yaml, synth_data, tmp_path):
    assert_user_error(train(synth_data, tmp_path / "o", "--weights", tmp_path / "w.pth", config=tiny_yaml),
                      "imagenet, none")


def test_eval_and_export_bad_checkpoint(synth_data, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    assert_user_error(run("eval", "--checkpoint", bad, "--data", synth_data, "--out", tmp_path / "e"), "bad.pt")
    assert_user_error(run("export", "onnx", "--checkpoint", tmp_path / "none.pt", "-o", tmp_path / "m.onnx"),
                      "not found")


def test_run_with_non_anodet_model(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert_user_error(run("run", "--model", path, "--source", "synthetic:2"), "not an anodet export")
    assert_user_error(run("run", "--model", path, "--source", "synthetic:2", "--backend", "magic"), "onnx-cpu")
