"""The runtime as a process: imports without torch, and stops cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from fake_model import make_fake_model, write_pair

TESTS = Path(__file__).parents[1]  # tests/, where fake_model.py is
HEAVY = ("torch", "torchvision", "anodet.models", "anodet.train")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return make_fake_model(tmp_path_factory.mktemp("model") / "fake.onnx")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    for i, bump in enumerate((0.0, 0.03, 0.0)):
        write_pair(root / "rgb", root / "depth", f"{i:03d}", bump=bump, depth_kind="png", seed=i)
    return root


def python(code: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
        **kwargs,
    )


def test_runtime_imports_and_streams_with_torch_blocked(model_path, folder, tmp_path):
    """sys.modules['torch'] = None makes any torch import fail: the runtime must not need it."""
    events = tmp_path / "events.jsonl"
    out = python(f"""
        import sys, json
        sys.modules["torch"] = None
        import anodet.runtime
        import anodet.runtime.sources.realsense
        from anodet.runtime import run
        summary = run({str(model_path)!r}, {str(folder)!r}, events={str(events)!r}, stats_every=0)
        try:
            import anodet.data.synthetic  # noqa: F401  (written by another helper)
            synthetic = run({str(model_path)!r}, "synthetic:3", stats_every=0).frames
        except ImportError:
            synthetic = None
        print(json.dumps({{"frames": summary.frames, "anomalies": summary.anomalies, "synthetic": synthetic}}))
    """)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["frames"] == 3 and result["anomalies"] == 1
    assert result["synthetic"] in (None, 3)
    assert len(events.read_text().splitlines()) == 3


def test_a_stream_leaves_torch_unimported(model_path, folder):
    out = python(f"""
        import sys
        from anodet.runtime import run
        run({str(model_path)!r}, {str(folder)!r}, stats_every=0)
        print(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r} or m in {HEAVY!r}))
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


ENDLESS = """
    import json, logging, sys, threading, time
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    from fake_model import flat_frame
    from anodet.runtime import run
    from anodet.runtime.frames import Frame

    class Endless:
        live, description = True, "endless camera"
        def __init__(self):
            self.closed = threading.Event()
        def close(self):
            self.closed.set()
        def __iter__(self):
            i = 0
            while not self.closed.wait(0.005):
                rgb, depth = flat_frame(24, 32, bump=0.03 * (i % 4 == 0), seed=i)
                yield Frame(i, time.time(), rgb, depth, f"frame {{i}}")
                i += 1

    summary = run({model!r}, Endless(), events={events!r}, stats_every=0.2)
    print(json.dumps(summary.to_dict()))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly_and_loses_no_event(model_path, tmp_path, sig):
    events = tmp_path / "events.jsonl"
    code = textwrap.dedent(ENDLESS.format(model=str(model_path), events=str(events)))
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if events.exists() and len(events.read_text().splitlines()) >= 20:
                break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        time.sleep(0.3)  # let a stats line through
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    text = events.read_text()
    assert text.endswith("\n")
    recs = [json.loads(line) for line in text.splitlines()]  # every line complete
    assert summary["stopped_by"] == "stop" and summary["frames"] == len(recs) >= 20
    assert summary["anomalies"] == sum(r["anomalous"] for r in recs) > 0
    assert f"{sig.name} received" in stderr and "FPS | arrival-to-decision p50" in stderr and "| processing p50" in stderr
