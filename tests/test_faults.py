"""Fault injection: what a hostile new user tries (issue 15), one parametrised case per fault.

Every case runs the CLI in-process (click's CliRunner) and must end with exit code 2, no
traceback, exactly one ``error:`` line that names the problem, every file that existed before
byte for byte unchanged (md5), and no output folder left behind by the failed run.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import TINY, tiny_raw

from anodet.cli import main, train_cmd


@dataclass
class Case:
    args: list
    needle: str  # must appear in the error line (case-insensitive)
    watched: list[Path] = field(default_factory=list)  # pre-existing files that must not change
    absent: list[Path] = field(default_factory=list)  # paths a failed run must not create


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def tiny_yaml_with(tmp: Path, **sections) -> Path:
    raw = tiny_raw(**sections)
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def yaml_case(text: str, needle: str) -> Callable:
    """A YAML file holding ``text`` (raw, as a user types it) on top of the tiny config."""
    def build(tmp: Path, fx) -> Case:
        path = tmp / "cfg.yaml"
        base = yaml.safe_dump({k: v for k, v in TINY.items() if k != "train"})
        path.write_text(base + text + "\n")
        out = tmp / "out"
        return Case(["train", "--config", path, "--data", fx("synth_data"), "--out", out], needle, absent=[out])

    return build


def experiment_copy(tmp: Path, fx) -> Path:
    dst = tmp / "exp"
    shutil.copytree(fx("trained"), dst)
    return dst


def experiment_files(exp: Path) -> list[Path]:
    return [exp / "checkpoints" / "best.pt", exp / "checkpoints" / "last.pt", exp / "config.yaml",
            exp / "history.csv"]


def train_over_existing(tmp, fx):
    exp = experiment_copy(tmp, fx)
    args = ["train", "--config", fx("tiny_yaml"), "--data", fx("synth_data"), "--out", exp, "--epochs", "1"]
    return Case(args, "--resume", experiment_files(exp))


def resume_and_force(tmp, fx):
    exp = experiment_copy(tmp, fx)
    args = ["train", "--config", fx("tiny_yaml"), "--data", fx("synth_data"), "--out", exp, "--resume", "--force"]
    return Case(args, "contradict", experiment_files(exp))


def resume_other_data(tmp, fx):
    exp = experiment_copy(tmp, fx)
    other = tmp / "other"
    shutil.copytree(fx("synth_data"), other)
    victim = min((other / "train" / "good" / "rgb").iterdir())
    victim.unlink()
    (other / "train" / "good" / "xyz" / (victim.stem + ".tiff")).unlink()
    args = ["train", "--config", fx("tiny_yaml"), "--data", other, "--out", exp, "--resume", "--epochs", "12"]
    return Case(args, "--new-data", experiment_files(exp))


def synth_over_earlier(tmp, fx):
    out = tmp / "synth"
    CliRunner().invoke(main, ["synth", str(out), "--size", "32", "--train", "1", "--val", "0", "--test", "0"])
    files = sorted(p for p in out.rglob("*") if p.is_file())
    return Case(["synth", out, "--size", "32", "--train", "2"], "--force", files)


def synth_out_is_file(tmp, fx):
    f = tmp / "afile"
    f.write_text("x")
    return Case(["synth", f, "--size", "32", "--train", "1"], "afile", [f])


def image_size_too_small(tmp, fx):
    # 16 training images at 64 px: layer4 is 2x2, 64 pixel vectors for 64 kept PCA channels.
    cfg = tiny_yaml_with(tmp, model={"reduce_channels": 64})
    out = tmp / "out"
    return Case(["train", "--config", cfg, "--data", fx("synth_data"), "--out", out], "image_size", absent=[out])


def export_case(extra: list, needle: str, checkpoint: str = "best.pt") -> Callable:
    def build(tmp, fx) -> Case:
        ckpt = fx("trained") / "checkpoints" / checkpoint
        out = tmp / "m.onnx"
        args = ["export", "onnx", "--checkpoint", ckpt, "-o", out, *[tmp if a == "TMP" else a for a in extra]]
        return Case(args, needle, [ckpt], absent=[out])

    return build


def export_over_existing(tmp, fx):
    out = tmp / "m.onnx"
    out.write_bytes(b"an earlier export")
    return Case(["export", "onnx", "--checkpoint", fx("trained") / "checkpoints" / "best.pt", "-o", out],
                "--force", [out])


def checkpoint_case(damage: Callable[[Path], None], needle: str, command: str = "eval") -> Callable:
    def build(tmp, fx) -> Case:
        bad = tmp / "bad.pt"
        shutil.copy(fx("trained") / "checkpoints" / "best.pt", bad)
        damage(bad)
        if command == "eval":
            out = tmp / "e"
            return Case(["eval", "--checkpoint", bad, "--data", fx("synth_data"), "--out", out], needle,
                        absent=[out])
        return Case(["export", "onnx", "--checkpoint", bad, "-o", tmp / "m.onnx"], needle, absent=[tmp / "m.onnx"])

    return build


def flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * 0.6)] ^= 0x10  # inside the backbone's weights
    path.write_bytes(bytes(data))


def without_config(path: Path) -> None:
    import torch

    ckpt = torch.load(path, weights_only=True)
    del ckpt["config"]
    torch.save(ckpt, path)


def int8_case(content: Callable[[Path], bytes], needle: str) -> Callable:
    def build(tmp, fx) -> Case:
        bad = tmp / "bad.onnx"
        bad.write_bytes(content(fx("exported")))
        out = tmp / "q.onnx"
        return Case(["export", "int8", "--model", bad, "--calib", fx("synth_data"), "-o", out], needle, [bad],
                    absent=[out])

    return build


def eval_batch_zero(tmp, fx):
    out = tmp / "e"
    ckpt = fx("trained") / "checkpoints" / "best.pt"
    return Case(["eval", "--checkpoint", ckpt, "--data", fx("synth_data"), "--out", out, "--batch", "0"], "--batch",
                absent=[out])


def eval_bad_data(tmp, fx):
    out = tmp / "e"
    ckpt = fx("trained") / "checkpoints" / "best.pt"
    return Case(["eval", "--checkpoint", ckpt, "--data", tmp / "nope", "--out", out], "nope", absent=[out])


def ablate_over_earlier(tmp, fx):
    out = tmp / "a"
    out.mkdir()
    (out / "ablation.json").write_text("[]")
    return Case(["ablate", "--data", fx("synth_data"), "--out", out], "--force", [out / "ablation.json"])


def bench_over_earlier(tmp, fx):
    out = tmp / "b"
    out.mkdir()
    (out / "bench.json").write_text("{}")
    return Case(["bench", "--model", fx("exported"), "--data", fx("synth_data"), "--out", out], "--force",
                [out / "bench.json"])


def eval_over_earlier(tmp, fx):
    out = tmp / "e"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    ckpt = fx("trained") / "checkpoints" / "best.pt"
    return Case(["eval", "--checkpoint", ckpt, "--data", fx("synth_data"), "--out", out], "--force",
                [out / "metrics.json"])


def run_case(extra: list, needle: str) -> Callable:
    def build(tmp, fx) -> Case:
        return Case(["run", "--model", fx("exported"), "--source", "synthetic:2",
                     *[tmp if a == "TMP" else a for a in extra]], needle)

    return build


def cli_case(build_args: Callable[[Path, Callable], tuple[list, list[Path]]], needle: str) -> Callable:
    """A case from a function that builds its files and returns (arguments, files to watch)."""
    def build(tmp, fx) -> Case:
        args, watched = build_args(tmp, fx)
        return Case(args, needle, watched)

    return build


def model_copy(tmp: Path, fx) -> Path:
    dst = tmp / "m.onnx"
    shutil.copy(fx("exported"), dst)
    return dst


def data_copy(tmp: Path, fx) -> Path:
    dst = tmp / "data"
    shutil.copytree(fx("synth_data"), dst)
    return dst


def linked(target: Path, link: Path, hard: bool = False) -> Path:
    import os

    (os.link if hard else os.symlink)(target, link)
    return link


def small_recording(tmp: Path) -> Path:
    pytest.importorskip("pyrealsense2")
    from fake_model import flat_frame

    from anodet.runtime.recorder import write_recording

    rec = tmp / "rec" / "r.db3"
    rec.parent.mkdir()
    write_recording(rec, [flat_frame(24, 32, seed=i) for i in range(2)])
    return rec


def _run_events_is_model(tmp, fx):
    m = model_copy(tmp, fx)
    return ["run", "--model", m, "--source", "synthetic:2", "--events", m], [m]


def _run_events_dot_path(tmp, fx):
    m = model_copy(tmp, fx)
    return ["run", "--model", m, "--source", "synthetic:2", "--events", tmp / "." / ".." / tmp.name / "m.onnx"], [m]


def _run_video_symlink(tmp, fx):
    m = model_copy(tmp, fx)
    return ["run", "--model", m, "--source", "synthetic:2", "--video", linked(m, tmp / "v.mp4")], [m]


def _run_events_hard_link(tmp, fx):
    m = model_copy(tmp, fx)
    return ["run", "--model", m, "--source", "synthetic:2", "--events", linked(m, tmp / "e.jsonl", hard=True)], [m]


def _run_anomalies_hold_source(tmp, fx):
    m, data = model_copy(tmp, fx), data_copy(tmp, fx)
    images = sorted((data / "test").rglob("*.png"))
    return ["run", "--model", m, "--source", data / "test", "--save-anomalies", data], images


def _run_events_in_source(tmp, fx):
    m, data = model_copy(tmp, fx), data_copy(tmp, fx)
    return ["run", "--model", m, "--source", data / "test", "--events", data / "test" / "e.jsonl"], [m]


def _engine_sidecar(tmp, fx):
    engine = tmp / "m.engine"
    engine.write_bytes(b"plan")
    side = tmp / "m.engine.json"
    side.write_text("{}")
    return ["run", "--model", engine, "--source", "synthetic:2", "--events", side], [engine, side]


def _train_out_in_data(tmp, fx):
    data = data_copy(tmp, fx)
    return ["train", "--config", fx("tiny_yaml"), "--data", data, "--out", data / "runs"], []


def _train_out_is_config(tmp, fx):
    cfg = tmp / "cfg.yaml"
    shutil.copy(fx("tiny_yaml"), cfg)
    return ["train", "--config", cfg, "--data", fx("synth_data"), "--out", tmp], [cfg]


def _eval_out_holds_checkpoint(tmp, fx):
    exp = experiment_copy(tmp, fx)
    return ["eval", "--checkpoint", exp / "checkpoints" / "best.pt", "--data", fx("synth_data"), "--out", exp], \
        experiment_files(exp)


def _eval_out_is_data(tmp, fx):
    data = data_copy(tmp, fx)
    return ["eval", "--model", model_copy(tmp, fx), "--data", data, "--out", linked(data, tmp / "d2")], []


def _ablate_out_is_data(tmp, fx):
    data = data_copy(tmp, fx)
    return ["ablate", "--data", data, "--out", data / "." / "train"], []


def _bench_out_is_data(tmp, fx):
    data = data_copy(tmp, fx)
    return ["bench", "--model", model_copy(tmp, fx), "--data", data, "--out", data], []


def _export_onnx_over_checkpoint(tmp, fx):
    exp = experiment_copy(tmp, fx)
    ckpt = exp / "checkpoints" / "best.pt"
    return ["export", "onnx", "--checkpoint", ckpt, "-o", linked(ckpt, tmp / "x.onnx", hard=True), "--force"], [ckpt]


def _export_int8_over_model(tmp, fx):
    m = model_copy(tmp, fx)
    return ["export", "int8", "--model", m, "--calib", fx("synth_data"), "-o", m, "--force"], [m]


def _export_tensorrt_cache_is_model(tmp, fx):
    m = model_copy(tmp, fx)
    return ["export", "tensorrt", "--model", m, "-o", tmp / "m.engine", "--timing-cache", m], [m]


def _export_triton_repo_holds_model(tmp, fx):
    m = model_copy(tmp, fx)
    return ["export", "triton", "--model", m, "-o", tmp, "--force"], [m]


def _export_openvino_over_model(tmp, fx):
    m = model_copy(tmp, fx)
    return ["export", "openvino", "--model", m, "-o", linked(m, tmp / "m.xml"), "--force"], [m]


def _capture_out_holds_recording(tmp, fx):
    rec = small_recording(tmp)
    return ["capture", "--source", rec, "--out", rec.parent], [rec]


def older_format(path: Path) -> None:
    import torch

    ckpt = torch.load(path, weights_only=True)
    ckpt.update(format="anodet-checkpoint/0", anodet_version="0.0.3")
    torch.save(ckpt, path)


def _truncated_onnx(tmp, fx):
    m = tmp / "m.onnx"
    m.write_bytes(fx("exported").read_bytes()[: fx("exported").stat().st_size // 2])
    return ["run", "--model", m, "--source", "synthetic:2"], [m]


def _engine_with_another_sidecar(tmp, fx):
    import json

    engine, side = tmp / "m.engine", tmp / "m.engine.json"
    engine.write_bytes(b"\x00" * 1000)  # stands in for a plan; its sidecar was built with another one
    side.write_text(json.dumps({"tensorrt_version": "10.3.0", "compute_capability": "8.9", "onnx_metadata": {},
                                "inputs": [], "outputs": [], "plan_bytes": 123456}))
    return ["run", "--model", engine, "--source", "synthetic:2"], [engine, side]


ALIAS_CASES = {
    "run --events is the model": cli_case(_run_events_is_model, "same file as --model"),
    "run --events is the model by ./..": cli_case(_run_events_dot_path, "same file as --model"),
    "run --video is a symlink to the model": cli_case(_run_video_symlink, "same file as --model"),
    "run --events is a hard link to the model": cli_case(_run_events_hard_link, "same file as --model"),
    "run --save-anomalies holds the source": cli_case(_run_anomalies_hold_source, "contains --source"),
    "run --events inside the source folder": cli_case(_run_events_in_source, "lies inside --source"),
    "run --events is the engine's sidecar": cli_case(_engine_sidecar, "the sidecar of --model"),
    "train --out inside --data": cli_case(_train_out_in_data, "lies inside --data"),
    "train --out holds --config": cli_case(_train_out_is_config, "contains --config"),
    "eval --out holds the checkpoint": cli_case(_eval_out_holds_checkpoint, "contains --checkpoint"),
    "eval --out is a symlink to --data": cli_case(_eval_out_is_data, "same file as --data"),
    "ablate --out inside --data": cli_case(_ablate_out_is_data, "lies inside --data"),
    "bench --out is --data": cli_case(_bench_out_is_data, "same file as --data"),
    "export onnx -o is a hard link to the checkpoint": cli_case(_export_onnx_over_checkpoint, "--checkpoint"),
    "export int8 -o is --model": cli_case(_export_int8_over_model, "same file as --model"),
    "export tensorrt --timing-cache is --model": cli_case(_export_tensorrt_cache_is_model, "--timing-cache"),
    "export triton -o holds --model": cli_case(_export_triton_repo_holds_model, "contains --model"),
    "export openvino -o is a symlink to --model": cli_case(_export_openvino_over_model, "same file as --model"),
    "capture --out holds the recording": cli_case(_capture_out_holds_recording, "contains --source"),
}


CASES = {
    "train over an experiment": train_over_existing,
    "train --resume --force": resume_and_force,
    "resume on other data": resume_other_data,
    "synth over its output": synth_over_earlier,
    "synth OUT is a file": synth_out_is_file,
    "yaml epochs ten": yaml_case("train: {epochs: ten}", "train.epochs"),
    "yaml epochs 2.5": yaml_case("train: {epochs: 2.5}", "train.epochs"),
    "yaml image_size word": yaml_case("data: {image_size: sixty}", "data.image_size"),
    "yaml reduction_factor 0": yaml_case("train: {epochs: 1}\nmodel: {reduction_factor: 0}", "reduction_factor"),
    "yaml weight_decay -1": yaml_case("train: {weight_decay: -1}", "weight_decay"),
    "yaml layers a string": yaml_case("train: {epochs: 1}\nmodel: {layers: layer2}", "model.layers"),
    "yaml bool as word": yaml_case("train: {epochs: 1}\ndata: {fill_holes: 'sure'}", "fill_holes"),
    "yaml lr nan": yaml_case("train: {lr: .nan}", "train.lr"),
    "yaml preset typo": yaml_case("preset: rgbd_reducd", "rgbd_reduced"),
    "image size too small for the data": image_size_too_small,
    "export opset 5": export_case(["--opset", "5"], "--opset"),
    "export -o folder --force": export_case(["-o", "TMP", "--force"], "folder"),
    "export batch 0": export_case(["--batch", "0"], "--batch"),
    "export last.pt": export_case([], "best.pt", checkpoint="last.pt"),
    "export over an existing file": export_over_existing,
    "export bit-flipped checkpoint": checkpoint_case(flip_bit, "bad.pt", command="export"),
    "eval bit-flipped checkpoint": checkpoint_case(flip_bit, "bad.pt"),
    "eval checkpoint without config": checkpoint_case(without_config, "config"),
    "eval batch 0": eval_batch_zero,
    "eval missing data": eval_bad_data,
    "eval over an earlier evaluation": eval_over_earlier,
    "ablate over an earlier ablation": ablate_over_earlier,
    "bench over an earlier benchmark": bench_over_earlier,
    "int8 truncated onnx": int8_case(lambda good: good.read_bytes()[:2000], "bad.onnx"),
    "int8 garbage onnx": int8_case(lambda good: b"\x08\x07garbage" * 100, "bad.onnx"),
    "run max-frames -1": run_case(["--max-frames", "-1"], "--max-frames"),
    "run events is a folder": run_case(["--events", "TMP"], "folder"),
    "run events on /dev/full": run_case(["--events", "/dev/full"], "/dev/full"),
    # sysfs refuses new files even to root, where the up-front access check passes
    "run video where no file can be made": run_case(["--video", "/sys/anodet.mp4"], "cannot write video"),
    **ALIAS_CASES,
    # issue 24, item 6: the rest of the fault table (disk, server, camera: tests below)
    "run an ONNX file truncated on disk": cli_case(_truncated_onnx, "m.onnx"),
    "run an engine whose sidecar belongs to another model": cli_case(_engine_with_another_sidecar,
                                                                       "does not match its sidecar"),
    "eval a checkpoint of an older anodet": checkpoint_case(older_format, "anodet-checkpoint/0"),
    "export a checkpoint of an older anodet": checkpoint_case(older_format, "written by anodet 0.0.3",
                                                              command="export"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_fault(name, tmp_path, request):
    case = CASES[name](tmp_path, request.getfixturevalue)
    before = {p: md5(p) for p in case.watched}
    result = CliRunner().invoke(main, [str(a) for a in case.args])
    assert result.exit_code == 2, (result.exit_code, result.output[-2000:], result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.lower().startswith("error:")]
    assert len(errors) == 1, result.output[-2000:]
    assert case.needle.lower() in errors[0].lower(), errors[0]
    assert {p: md5(p) for p in case.watched} == before
    for p in case.absent:
        assert not p.exists(), f"the failed run left {p}"


def test_standalone_scripts_take_dash_h():
    result = CliRunner().invoke(train_cmd, ["-h"])
    assert result.exit_code == 0 and "--resume" in result.output


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import torch

    from anodet.checkpoint import write_checkpoint
    from anodet.errors import AnodetError

    path = tmp_path / "best.pt"
    write_checkpoint({"model": {"w": torch.ones(3)}, "config": {}}, path)
    before = md5(path)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(AnodetError, match="best.pt.*No space left"):
        write_checkpoint({"model": {"w": torch.zeros(3)}, "config": {}}, path)
    assert md5(path) == before
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]  # no .tmp left behind


def test_orphans_of_killed_writes_are_removed_and_modes_follow_umask(tmp_path):
    import os

    import torch

    from anodet.checkpoint import write_checkpoint

    orphan = tmp_path / "last.pt.k1ll3d.tmp"
    orphan.write_bytes(b"half a checkpoint")
    old = os.umask(0o022)
    try:
        write_checkpoint({"model": {"w": torch.ones(2)}, "config": {}}, tmp_path / "last.pt")
    finally:
        os.umask(old)
    assert not orphan.exists()
    assert (tmp_path / "last.pt").stat().st_mode & 0o777 == 0o644


def test_non_finite_loss_is_an_error_and_leaves_no_folder(tiny_yaml, synth_data, tmp_path, monkeypatch):
    import anodet.train

    monkeypatch.setattr(anodet.train, "_val_loss", lambda *a, **k: float("nan"))
    out = tmp_path / "o"
    result = CliRunner().invoke(main, ["train", "--config", str(tiny_yaml), "--data", str(synth_data),
                                       "--out", str(out), "--epochs", "1"])
    assert result.exit_code == 2, result.output[-2000:]
    assert "error: the loss at epoch 1 is nan" in result.output
    assert not out.exists()


def test_extreme_depth_in_training_is_named_and_marked_missing(synth_data, tmp_path, caplog):
    import tifffile

    from anodet.data.samples import discover, load_sample
    from anodet.preprocess import PreprocessSpec

    data = tmp_path / "d"
    shutil.copytree(synth_data, data)
    victim = min((data / "train" / "good" / "xyz").iterdir())
    xyz = tifffile.imread(victim)
    xyz[10:14, 10:14, 2] = 3e38
    tifffile.imwrite(victim, xyz, photometric="minisblack", planarconfig="contig")
    sample = next(s for s in discover(data).train + discover(data).val if s.depth_path == victim)
    with caplog.at_level("WARNING", logger="anodet.data.samples"):
        _, depth, _ = load_sample(sample, PreprocessSpec(image_size=64))
    assert np.isfinite(depth).all() and depth.max() < 100
    assert victim.name in caplog.text


def test_export_on_a_full_disk_keeps_the_old_model(trained, tmp_path, monkeypatch):
    import anodet.export.onnx as export
    from anodet.errors import AnodetError

    out = tmp_path / "m.onnx"
    out.write_bytes(b"the model exported before")

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export.onnx, "save", full)
    with pytest.raises(AnodetError, match="m.onnx failed.*No space left"):
        export.export_onnx(trained / "checkpoints" / "best.pt", out, force=True)
    assert out.read_bytes() == b"the model exported before"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_weights_pickle_error_gives_no_unsafe_advice(tiny_yaml, synth_data, tmp_path):
    import torch

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = tmp_path / "evil.pth"
    torch.save({"w": Evil()}, evil)
    result = CliRunner().invoke(main, ["train", "--config", str(tiny_yaml), "--data", str(synth_data),
                                       "--out", str(tmp_path / "o"), "--weights", str(evil)])
    assert result.exit_code == 2 and "this must never run" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "evil.pth" in errors[0]
    assert "weights_only" not in result.output and "two options" not in result.output


# --- the fault table of issue 24, item 6: what the user sees ---------------------------------


def _events_of(path: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in path.read_bytes().decode().splitlines()]  # each line complete


def _error_line(output: str) -> str:
    (line,) = [x for x in output.splitlines() if x.startswith("error:")]
    assert "Traceback" not in output
    return line


def test_disk_filling_during_events_keeps_complete_lines(tmp_path, exported, monkeypatch):
    import errno
    import io

    from anodet.runtime.sinks import events as sinks

    class FillingDisk(io.FileIO):
        """Takes 3 lines, then half of the 4th (a short write), then ENOSPC: a disk filling up."""

        def write(self, data):
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls == 4:
                return super().write(bytes(data)[: len(data) // 2])
            if self.calls > 4:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(data)

    def filling_open(path, mode, **kwargs):  # the events file; its truncation opens it for real
        return FillingDisk(path, mode) if mode == "ab" else open(path, mode, **kwargs)

    monkeypatch.setattr(sinks, "open", filling_open, raising=False)
    events = tmp_path / "e.jsonl"
    res = CliRunner().invoke(main, ["run", "--model", str(exported), "--source", "synthetic:10", "--events",
                                    str(events)])
    assert res.exit_code == 2
    line = _error_line(res.output)
    assert "e.jsonl failed after 3 events (No space left on device)" in line and "kept" in line
    assert [e["index"] for e in _events_of(events)] == [0, 1, 2]  # the half line was cut off


def test_disk_filling_during_video_stops_while_it_is_playable(tmp_path, exported, monkeypatch):
    import collections

    import cv2

    from anodet.runtime.sinks import video

    real, calls = video.shutil.disk_usage, []

    def filling(path):
        calls.append(path)
        usage = real(path)
        free = usage.free if len(calls) <= 3 else video.VIDEO_RESERVE // 2
        return collections.namedtuple("usage", "total used free")(usage.total, usage.used, free)

    monkeypatch.setattr(video.shutil, "disk_usage", filling)
    events, mp4 = tmp_path / "e.jsonl", tmp_path / "v.mp4"
    res = CliRunner().invoke(main, ["run", "--model", str(exported), "--source", "synthetic:10", "--events",
                                    str(events), "--video", str(mp4)])
    assert res.exit_code == 2
    assert "video" in (line := _error_line(res.output)) and "disk is full" in line and "after 3 frames" in line
    assert [e["index"] for e in _events_of(events)] == [0, 1, 2]
    cap = cv2.VideoCapture(str(mp4))  # finalised: the frames before the full disk play back
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()


def test_camera_unplugged_mid_stream_ends_cleanly_and_says_so(tmp_path, exported, monkeypatch):
    from fake_model import FlakyDevice

    from anodet.runtime import pipeline

    # --source realsense opens this fake camera instead: 4 frames, then unplugged for good
    monkeypatch.setattr(pipeline, "open_source", lambda spec, **kw: FlakyDevice(
        total=10, fail_at=4, refusals=10**6, give_up_after=0.2))
    events = tmp_path / "e.jsonl"
    res = CliRunner().invoke(main, ["run", "--model", str(exported), "--source", "realsense", "--events",
                                    str(events)])
    assert res.exit_code == 1, res.output  # not an error line, but not "all well" for a supervisor
    assert "Traceback" not in res.output and not [x for x in res.output.splitlines() if x.startswith("error:")]
    summary = res.output.strip().splitlines()[-1]
    assert "stopped by source lost" in summary and "did not come back within 0.2 s" in summary
    judged = [e["index"] for e in _events_of(events)]  # live: a slow model may drop a frame
    assert summary.startswith(f"{len(judged)} frames") and judged and set(judged) <= {0, 1, 2, 3}


def test_triton_server_killed_mid_stream(tmp_path):
    """Also in tests/test_triton_server.py; here as a row of the fault table."""
    import subprocess
    import sys
    import time

    pytest.importorskip("tritonclient.grpc")
    from fake_model import make_fake_model

    from anodet.errors import AnodetError
    from anodet.export.triton import write_repository
    from anodet.serve.triton_server import TritonServer, find_bundle

    try:
        find_bundle()
    except AnodetError as exc:
        pytest.skip(f"no tritonserver bundle: {exc}")
    repo = tmp_path / "repo"
    write_repository(make_fake_model(tmp_path / "m.onnx"), repo, flavour="python", max_batch=4, threads=1)
    server = TritonServer(repo)
    events = tmp_path / "e.jsonl"
    try:
        proc = subprocess.Popen([sys.executable, "-m", "anodet.cli", "run", "--backend", "triton", "--url",
                                 server.grpc_url, "--source", "synthetic:500", "--events", str(events),
                                 "--retry-for", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not events.exists() or len(events.read_bytes().splitlines()) < 3):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        server.kill()
        _, err = proc.communicate(timeout=60)
    finally:
        server.stop()
    assert proc.returncode == 2, err
    assert "not reachable" in _error_line(err)
    written = _events_of(events)
    assert 3 <= len(written) < 500 and [e["index"] for e in written] == list(range(len(written)))
