"""Against a real Triton server: the tritonserver bundled in the nvidia-pytriton wheel, serving the
python flavour on loopback ports (``scripts/bootstrap.sh`` unpacks it into build/triton/server).

The bundle has only Triton's Python backend, so the onnxruntime and tensorrt flavours are checked
as configs only (tests/test_triton.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc")
from click.testing import CliRunner
from fake_model import make_fake_model

from anodet.cli import run_cmd
from anodet.errors import AnodetError
from anodet.export.triton import write_repository
from anodet.preprocess import prepare_frame
from anodet.runtime.backends import OnnxRuntimeBackend
from anodet.runtime.backends.triton import TritonBackend
from anodet.runtime.sources import SyntheticSource
from anodet.serve.triton_server import TritonServer, find_bundle, free_port

try:
    find_bundle()
except AnodetError as exc:  # CI installs it (make test -> bootstrap); say why when it is absent
    pytest.skip(f"no tritonserver bundle: {exc}", allow_module_level=True)

S = 32
GAIN = 27.0  # puts the synthetic frames' scores on both sides of the threshold
PLAIN = '''import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([]) for _ in requests]
'''


def _plain_model(repo: Path) -> None:
    """A server model without anodet metadata."""
    (repo / "plain" / "1").mkdir(parents=True)
    (repo / "plain" / "1" / "model.py").write_text(PLAIN)
    (repo / "plain" / "config.pbtxt").write_text(
        'name: "plain"\nbackend: "python"\nmax_batch_size: 4\n'
        'input [ { name: "rgb" data_type: TYPE_UINT8 dims: [ -1, -1, 3 ] } ]\n'
        'output [ { name: "score" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(server, local ONNX model, repository); the server is stopped whatever happens."""
    tmp = tmp_path_factory.mktemp("triton")
    model = make_fake_model(tmp / "model.onnx", image_size=S, gain=GAIN)
    repo = tmp / "repo"
    # a long queue delay so that concurrent requests surely meet in one batch
    write_repository(model, repo, flavour="python", max_batch=8, threads=1, queue_delay_us=20000)
    _plain_model(repo)
    server = TritonServer(repo)
    try:
        yield server, model, repo
    finally:
        server.stop()
    assert server.process.poll() is not None


def _frames(n: int, seed: int = 0):
    return list(SyntheticSource(n, size=96, seed=seed))


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_matches_local_runtime(served, tmp_path):
    server, model, _ = served
    runner = CliRunner()
    local = runner.invoke(run_cmd, ["--model", str(model), "--source", "synthetic:24", "--backend", "onnx-cpu",
                                    "--events", str(tmp_path / "local.jsonl")])
    remote = runner.invoke(run_cmd, ["--backend", "triton", "--url", server.grpc_url, "--source", "synthetic:24",
                                     "--events", str(tmp_path / "triton.jsonl"), "--batch", "4"])
    assert local.exit_code == 0, local.output
    assert remote.exit_code == 0, remote.output
    a, b = _events(tmp_path / "local.jsonl"), _events(tmp_path / "triton.jsonl")
    assert len(a) == len(b) == 24
    assert [e["anomalous"] for e in a] == [e["anomalous"] for e in b]
    assert {e["anomalous"] for e in a} == {True, False}  # both decisions are exercised
    assert max(abs(x["score"] - y["score"]) for x, y in zip(a, b)) <= 1e-5


def test_maps_match_and_server_preprocesses_camera_frames(served):
    server, model, _ = served
    local, remote = OnnxRuntimeBackend(model, "cpu"), TritonBackend(server.grpc_url)
    try:
        assert remote.info == local.info and remote.max_batch == 8
        frames = _frames(11, seed=3)
        prepared = [prepare_frame(f.rgb, f.depth, local.info.preprocess, strict=True) for f in frames]
        rgb, depth = np.stack([p[0] for p in prepared]), np.stack([p[1] for p in prepared])
        want, got = local.predict(rgb, depth), remote.predict(rgb, depth)  # 11 frames: chunks of 8 and 3
        assert np.abs(want["anomaly_map"] - got["anomaly_map"]).max() <= 1e-5
        assert np.array_equal(want["mask"], got["mask"]) and got["score"].shape == (11,)
        # 96 x 96 camera frames, resized and hole-filled on the server
        raw = remote.predict_camera(np.stack([f.rgb for f in frames]), np.stack([f.depth for f in frames]))
        assert np.abs(want["anomaly_map"] - raw["anomaly_map"]).max() <= 1e-5
    finally:
        remote.close()


def _stats(url: str) -> tuple[int, int]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    stats = client.get_inference_statistics("anodet").model_stats[0]
    client.close()
    return stats.inference_count, stats.execution_count


def test_eight_concurrent_clients_are_batched(served):
    server, model, _ = served
    local = OnnxRuntimeBackend(model, "cpu")
    frames = _frames(8, seed=5)
    rgb, depth = np.stack([f.rgb for f in frames]), np.stack([f.depth for f in frames])
    want = [local.predict(*[x[None] for x in prepare_frame(f.rgb, f.depth, local.info.preprocess)]) for f in frames]
    before = _stats(server.grpc_url)
    clients = [TritonBackend(server.grpc_url) for _ in range(8)]
    results, errors = {}, []
    start = threading.Barrier(8)

    def stream(i: int) -> None:
        try:
            start.wait()
            for round_ in range(4):
                results[i, round_] = clients[i].predict_camera(rgb[i:i + 1], depth[i:i + 1])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for c in clients:
        c.close()
    assert not errors and len(results) == 32
    for (i, _), out in results.items():  # every client got its own frame's verdict
        assert np.abs(out["anomaly_map"][0] - want[i]["anomaly_map"][0]).max() <= 1e-5
    inferences, executions = (a - b for a, b in zip(_stats(server.grpc_url), before))
    assert inferences == 32
    assert executions < inferences  # the dynamic batcher joined requests


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def _stream_then(tmp_path: Path, url: str, action, retry_for: str, frames: int) -> tuple[subprocess.Popen, Path]:
    """Start anodet-run on a synthetic stream, call ``action`` once 5 events are written."""
    events = tmp_path / "events.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "anodet.cli", "run", "--backend", "triton", "--url", url,
                             "--source", f"synthetic:{frames}", "--events", str(events), "--retry-for", retry_for],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not events.exists() or len(events.read_text().splitlines()) < 5):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    action()
    return proc, events


def test_server_killed_mid_stream_keeps_events_and_fails_clearly(served, tmp_path):
    _, _, repo = served
    server = TritonServer(repo)
    try:
        proc, events = _stream_then(tmp_path, server.grpc_url, server.kill, "2", 300)
        _, err = proc.communicate(timeout=60)
    finally:
        server.stop()
    assert proc.returncode == 2, err
    (line,) = _error_lines(err)
    assert "not reachable" in line and server.grpc_url in line
    written = _events(events)  # every line is complete JSON
    assert 5 <= len(written) < 300
    assert [e["index"] for e in written] == list(range(len(written)))


def test_server_restarted_mid_stream_reconnects(served, tmp_path):
    _, _, repo = served
    port = free_port()
    first = TritonServer(repo, grpc_port=port)
    second = None

    def restart() -> None:
        nonlocal second
        first.kill()
        second = TritonServer(repo, grpc_port=port)

    try:
        proc, events = _stream_then(tmp_path, first.grpc_url, restart, "60", 40)
        _, err = proc.communicate(timeout=120)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert proc.returncode == 0, err
    assert "answered again" in err
    assert [e["index"] for e in _events(events)] == list(range(40))  # no frame lost


def test_bad_server_inputs_are_one_line_errors(served, tmp_path):
    server, _, _ = served
    cases = {
        "not reachable": ["--url", f"127.0.0.1:{free_port()}", "--retry-for", "0.5"],
        "no model 'nope'": ["--url", server.grpc_url, "--model-name", "nope"],
        "not an anodet export": ["--url", server.grpc_url, "--model-name", "plain"],
        "timed out": ["--url", server.grpc_url, "--timeout", "0.0005"],
        "--url HOST:PORT": [],
    }
    runner = CliRunner()
    for expected, args in cases.items():
        events = tmp_path / f"{len(expected)}.jsonl"
        res = runner.invoke(run_cmd, ["--backend", "triton", "--source", "synthetic:3", "--events", str(events), *args])
        assert res.exit_code == 2, (expected, res.output)
        lines = _error_lines(res.output)
        assert len(lines) == 1 and expected in lines[0], (expected, res.output)
        assert "Traceback" not in res.output
        assert not events.exists()
    assert "models there: anodet (READY), plain (READY)" in _error_lines(
        runner.invoke(run_cmd, ["--backend", "triton", "--url", server.grpc_url, "--model-name", "nope",
                                "--source", "synthetic:1"]).output)[0]


def test_inference_timeout_is_an_error(served):
    server, _, _ = served
    backend = TritonBackend(server.grpc_url)
    backend.timeout = 1e-4
    frames = _frames(1)
    with pytest.raises(AnodetError, match="inference for 'anodet' timed out"):
        backend.predict_camera(frames[0].rgb[None], frames[0].depth[None])
    backend.close()


def test_timeout_mid_stream_keeps_the_events_written(served, tmp_path):
    from anodet.runtime import run

    server, _, _ = served
    backend, events = TritonBackend(server.grpc_url), tmp_path / "events.jsonl"
    try:
        assert run(backend, "synthetic:3", events=events).frames == 3
        backend.timeout = 1e-4  # the server cannot answer that fast
        with pytest.raises(AnodetError, match="timed out"):
            run(backend, "synthetic:3", events=events)
    finally:
        backend.close()
    assert [e["index"] for e in _events(events)] == [0, 1, 2]


def test_server_env_is_loopback_only(served):
    server, _, _ = served
    assert server.grpc_url.startswith("127.0.0.1:")
    assert "--grpc-address=127.0.0.1" in " ".join(server.process.args)
    assert "--http-address=127.0.0.1" in " ".join(server.process.args)
