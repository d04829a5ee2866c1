"""Depth camera models: z^2 noise, depth-unit steps, stereo shadows, ideal = the original depth."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from anodet.cli import synth_cmd
from anodet.data.arrays import load_arrays
from anodet.data.samples import discover
from anodet.data.sensor import (
    SENSORS,
    focal_length,
    quantise,
    requantise,
    sensor_depth,
    stereo_shadow,
)
from anodet.data.synthetic import make_frame, write_dataset
from anodet.errors import AnodetError
from anodet.preprocess import PreprocessSpec, load_depth

SIZE = 64


def _flat(z: float, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A flat wall at z metres (clean depth) and its zero height map."""
    return np.full((size, size), z, np.float32), np.zeros((size, size), np.float32)


@pytest.mark.parametrize("name", list(SENSORS))
def test_noise_grows_with_z_squared(name):
    sensor = SENSORS[name]
    rms = {}
    for z in (0.3, 0.6):
        clean, flat = _flat(z)
        d = sensor_depth(np.random.default_rng(0), clean, flat, z / focal_length(96), focal_length(96), sensor)
        valid = d > 0
        rms[z] = float(np.sqrt(np.mean((d[valid] - z) ** 2)))
        # Measured noise matches the model (quantisation adds unit/sqrt(12) in quadrature).
        expected = np.hypot(sensor.rms_noise(z), sensor.depth_unit_m / np.sqrt(12))
        assert rms[z] == pytest.approx(expected, rel=0.2)
    assert rms[0.6] / rms[0.3] == pytest.approx(4.0, rel=0.25)


def test_d435_noise_at_half_a_metre_is_under_a_millimetre():
    # 0.5^2 * 0.08 / (446.8 px * 0.05 m) from the white paper's formula
    assert SENSORS["d435"].rms_noise(0.5) == pytest.approx(0.000895, rel=0.01)
    assert SENSORS["d405"].rms_noise(0.5) > SENSORS["d435"].rms_noise(0.5)  # shorter baseline


@pytest.mark.parametrize("name", list(SENSORS))
def test_values_are_whole_depth_units(name):
    unit = SENSORS[name].depth_unit_m
    _, depth, _ = make_frame(np.random.default_rng(3), SIZE, "crack", name)
    steps = depth / unit
    assert (depth == 0).any() and (depth > 0).mean() > 0.9
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)
    assert len(np.unique(depth[depth > 0])) > 3  # not collapsed to one value


def test_quantise_keeps_missing_and_rounds():
    q = quantise(np.array([0.0, 0.5004, 0.5006], np.float32), 0.001)
    np.testing.assert_allclose(q, [0.0, 0.500, 0.501], atol=1e-7)


def test_requantise_is_a_z16_grid_at_a_random_phase():
    rng = np.random.default_rng(0)
    depth = np.linspace(0.45, 0.55, 400, dtype=np.float32).reshape(20, 20)
    depth[0, :3] = 0.0
    outs = [requantise(depth, 0.001, rng) for _ in range(2)]
    for out in outs:
        assert (out[0, :3] == 0).all() and (out[depth > 0] > 0).all()
        assert np.abs(out - depth)[depth > 0].max() <= 0.0005 + 1e-6  # at most half a step away
        steps = np.diff(np.unique(out[out > 0]))
        np.testing.assert_allclose(steps, 0.001, atol=2e-6)  # whole steps between levels
    assert not np.array_equal(outs[0], outs[1])  # the phase differs between draws


def test_load_arrays_appends_requantised_copies(tmp_path):
    root = write_dataset(tmp_path, size=SIZE, n_train=3, n_val=0, n_test_per_type=1, seed=0)
    train = discover(root, need_depth=True, val_fraction=0.0).train
    spec = PreprocessSpec(image_size=32, fill_holes=False)
    rgb, depth = load_arrays(train, spec, need_depth=True)
    rgb2, depth2 = load_arrays(train, spec, need_depth=True, depth_units=[0.001])
    assert rgb2.shape[0] == depth2.shape[0] == 2 * len(train)
    np.testing.assert_array_equal(rgb2[:3], rgb) and np.testing.assert_array_equal(rgb2[3:], rgb)
    np.testing.assert_array_equal(depth2[:3], depth)  # originals first, unchanged
    copies = depth2[3:][depth2[3:] > 0]
    assert not np.array_equal(depth2[3:], depth) and len(np.unique(np.round(copies, 6))) < len(np.unique(depth[depth > 0]))


def test_stereo_shadow_is_left_of_a_nearer_edge():
    # A box 5 cm nearer than a wall at 0.5 m, columns 40..59 of 100.
    depth = np.full((8, 100), 0.5, np.float32)
    depth[:, 40:60] = 0.45
    f, b = 500.0, 0.05
    shadow = stereo_shadow(depth, f, b)
    width = f * b * (1 / 0.45 - 1 / 0.5)  # 5.6 px
    cols = np.nonzero(shadow[0])[0]
    assert cols.max() == 39 and cols.min() == 40 - int(width)  # the 5 columns left of the box
    assert (shadow == shadow[0]).all()  # every row alike
    assert not shadow[:, 40:].any()  # the box and the right side are seen
    assert not stereo_shadow(np.full((8, 100), 0.5, np.float32), f, b).any()  # flat: no shadow


def test_sensor_depth_has_holes_beside_depth_edges():
    depth = np.full((64, 64), 0.5, np.float32)
    depth[16:48, 24:48] = 0.47
    height = 0.5 - depth
    out = sensor_depth(np.random.default_rng(1), depth, height, 0.5 / 600, 600.0, SENSORS["d435"])
    hole_cols = np.nonzero((out[20:44] == 0).mean(axis=0) > 0.9)[0]
    assert hole_cols.size >= 2 and hole_cols.max() == 23  # the band ends at the edge


def test_ideal_is_the_original_depth_and_default():
    a = make_frame(np.random.default_rng(5), SIZE, "geometry")
    b = make_frame(np.random.default_rng(5), SIZE, "geometry", "ideal")
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    steps = b[1][b[1] > 0] / 0.001
    assert np.abs(steps - np.round(steps)).max() > 0.1  # float depth, not in mm steps


def test_sensor_keeps_rgb_and_mask_and_is_defect_independent():
    ideal = make_frame(np.random.default_rng(9), SIZE, "crack")
    d435 = make_frame(np.random.default_rng(9), SIZE, "crack", "d435")
    np.testing.assert_array_equal(ideal[0], d435[0])
    np.testing.assert_array_equal(ideal[2], d435[2])
    good = make_frame(np.random.default_rng(9), SIZE, None, "d435")
    far = np.abs(good[1] - d435[1]) > 0
    assert far.any() and not (far & ~ideal[2]).mean() > 0.05  # changes stay at the defect


def test_write_dataset_and_cli_sensor(tmp_path):
    root = write_dataset(tmp_path / "a", size=SIZE, n_train=1, n_val=0, n_test_per_type=1, sensor="d405")
    depth = load_depth(next((root / "train" / "good" / "xyz").glob("*.tiff")))
    steps = depth / 0.0001
    np.testing.assert_allclose(steps, np.round(steps), atol=2e-2)  # float32 xyz round trip
    with pytest.raises(AnodetError, match="unknown sensor"):
        write_dataset(tmp_path / "b", size=SIZE, n_train=1, sensor="kinect")
    res = CliRunner().invoke(synth_cmd, [str(tmp_path / "c"), "--size", "64", "--train", "1", "--val", "0",
                                         "--test", "0", "--sensor", "bogus"])
    assert res.exit_code == 2 and "unknown sensor" in res.output
