"""Test helpers: a tiny anodet-contract ONNX model built with onnx.helper, a slow backend,
fixture frames/files and a flaky fake camera.

The fake model's verdict is easy to control from the input: with depth,
anomaly_map = |depth - mean depth of the image| * gain (metres), so a flat surface scores ~0
and a bump of 0.5 / gain metres reaches the 0.5 threshold; RGB-only models use the grey
level (0..1) instead of depth. score = max of the map, mask = map > 0.5.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import tifffile
from onnx import TensorProto, helper

from anodet.artifact import Calibration, ModelInfo
from anodet.preprocess import PreprocessSpec
from anodet.runtime.frames import Frame
from anodet.runtime.sources import LiveSource

GAIN = 50.0  # a 1 cm deviation from the mean depth reaches the 0.5 threshold


def fake_info(image_size: int = 32, in_channels: int = 4, batch: int | None = None, **fields) -> ModelInfo:
    """Metadata of a test model; ``fields`` override any other ModelInfo field."""
    values = {
        "version": "0.0-test",
        "preset": "fake",
        "raw_threshold": 0.01,
        "score_scale": 0.01,
        "extra": {"fake": True},
        "calibration": Calibration(val_fraction=0.2, seed=0, threshold_method="image_quantile",
                                   threshold_quantile=0.99),
        **fields,
    }
    return ModelInfo(
        in_channels=in_channels,
        image_size=image_size,
        preprocess=PreprocessSpec(image_size=image_size, fill_holes=True, remove_plane=False),
        batch=batch,
        **values,
    )


def make_fake_model(
    path: str | Path,
    *,
    image_size: int = 32,
    in_channels: int = 4,
    batch: int | None = None,
    gain: float = GAIN,
    metadata: bool = True,
    info_fields: dict | None = None,
) -> Path:
    """Write the fake model to ``path`` and return it (``info_fields``: see fake_info)."""
    s, n = image_size, (batch if batch else "N")
    rgb = helper.make_tensor_value_info("rgb", TensorProto.UINT8, [n, s, s, 3])
    inputs = [rgb]
    nodes = []
    if in_channels == 4:
        inputs.append(helper.make_tensor_value_info("depth", TensorProto.FLOAT, [n, s, s]))
        # keep rgb in the graph so both inputs are real graph inputs
        nodes += [
            helper.make_node("Cast", ["rgb"], ["rgb_f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMean", ["rgb_f"], ["rgb_m"], axes=[3], keepdims=0),
            helper.make_node("Mul", ["rgb_m", "zero"], ["rgb_0"]),
            helper.make_node("Add", ["depth", "rgb_0"], ["signal"]),
        ]
    else:
        nodes += [
            helper.make_node("Cast", ["rgb"], ["rgb_f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMean", ["rgb_f"], ["rgb_m"], axes=[3], keepdims=0),
            helper.make_node("Mul", ["rgb_m", "inv255"], ["signal"]),
        ]
    nodes += [
        helper.make_node("ReduceMean", ["signal"], ["mean"], axes=[1, 2], keepdims=1),
        helper.make_node("Sub", ["signal", "mean"], ["diff"]),
        helper.make_node("Abs", ["diff"], ["absdiff"]),
        helper.make_node("Mul", ["absdiff", "gain"], ["anomaly_map"]),
        helper.make_node("ReduceMax", ["anomaly_map"], ["score"], axes=[1, 2], keepdims=0),
        helper.make_node("Greater", ["anomaly_map", "half"], ["over"]),
        helper.make_node("Cast", ["over"], ["mask"], to=TensorProto.UINT8),
    ]
    consts = [
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("inv255", TensorProto.FLOAT, [], [1.0 / 255.0]),
        helper.make_tensor("gain", TensorProto.FLOAT, [], [gain]),
        helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
    ]
    outputs = [
        helper.make_tensor_value_info("score", TensorProto.FLOAT, [n]),
        helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [n, s, s]),
        helper.make_tensor_value_info("mask", TensorProto.UINT8, [n, s, s]),
    ]
    graph = helper.make_graph(nodes, "anodet_fake", inputs, outputs, initializer=consts)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="anodet-tests"
    )
    model.ir_version = 8
    if metadata:
        helper.set_model_props(
            model, {"anodet": fake_info(image_size, in_channels, batch, **(info_fields or {})).to_json()}
        )
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def flat_frame(
    h: int = 48, w: int = 64, *, bump: float = 0.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """rgb uint8 h x w x 3 (random texture) and depth float32 h x w: a plane at 0.5 m with an
    optional raised square of ``bump`` metres in the middle (0.03 -> clearly anomalous)."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    depth = np.full((h, w), 0.5, np.float32)
    depth[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3] -= bump
    return rgb, depth


class SlowBackend:
    """Wraps a backend and sleeps ``delay`` seconds per predict call (a slow accelerator)."""

    def __init__(self, inner, delay: float):
        self.inner, self.delay = inner, delay
        self.name, self.info = f"slow-{inner.name}", inner.info
        self.calls = 0

    def predict(self, rgb, depth):
        self.calls += 1
        time.sleep(self.delay)
        return self.inner.predict(rgb, depth)

    def close(self):
        self.inner.close()


def write_pair(rgb_dir, depth_dir, stem, *, bump=0.0, depth_kind="png", seed=0):
    rgb, depth = flat_frame(24, 32, bump=bump, seed=seed)
    rgb_dir.mkdir(parents=True, exist_ok=True)
    depth_dir.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(rgb_dir / f"{stem}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if depth_kind == "png":  # 16-bit millimetres
        cv2.imwrite(str(depth_dir / f"{stem}.png"), np.round(depth * 1000).astype(np.uint16))
    elif depth_kind == "npy":
        np.save(depth_dir / f"{stem}.npy", depth)
    else:  # MVTec 3D-AD organized point cloud, z = depth
        xyz = np.zeros(depth.shape + (3,), np.float32)
        xyz[..., 2] = depth
        tifffile.imwrite(str(depth_dir / f"{stem}.tiff"), xyz, photometric="rgb")
    return rgb, depth


class FlakyDevice(LiveSource):
    """A fake camera: disconnects after ``fail_at`` frames and refuses ``refusals`` reconnects."""

    description = "flaky test camera"

    def __init__(self, total=10, fail_at=4, refusals=2, give_up_after=5.0):
        super().__init__(give_up_after=give_up_after, first_delay=0.01, max_delay=0.04)
        self.total, self.fail_at, self.refusals = total, fail_at, refusals
        self.i, self.connects, self.connected = 0, 0, False

    def _connect(self):
        self.connects += 1
        if self.connects > 1 and self.refusals > 0:
            self.refusals -= 1
            raise RuntimeError("No device connected")
        self.connected = True

    def _read(self):
        if self.i >= self.total:
            self.close()
            return None
        if self.i == self.fail_at and self.connects == 1:
            raise RuntimeError("Frame didn't arrive within 5000")
        rgb, depth = flat_frame(24, 32, seed=self.i)
        self.i += 1
        return Frame(self.i - 1, float(self.i), rgb, depth, f"frame {self.i - 1}")

    def _disconnect(self):
        self.connected = False
