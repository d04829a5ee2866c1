"""Torch-free preprocessing: depth loading, hole filling, plane removal, resizing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tifffile

from anodet.errors import AnodetError
from anodet.preprocess import (
    PreprocessSpec,
    fill_holes,
    load_depth,
    load_mask,
    load_rgb,
    prepare_frame,
    remove_plane,
    resize_depth,
    resize_mask,
    smooth_depth,
    to_depth,
)

# --- fill_holes -----------------------------------------------------------------------------

def test_fill_holes_asymmetric_cases():
    # Valid pixels at three corners-ish; each hole takes the value of its nearest valid pixel.
    d = np.zeros((3, 4), np.float32)
    d[0, 3], d[2, 0] = 5.0, 7.0
    expected = np.array([[7, 5, 5, 5], [7, 7, 5, 5], [7, 7, 7, 5]], np.float32)
    np.testing.assert_array_equal(fill_holes(d), expected)

    d = np.zeros((5, 7), np.float32)
    d[0, 0], d[4, 6], d[1, 5] = 1.0, 2.0, 3.0
    out = fill_holes(d)
    assert out[0, 2] == 1.0  # 2 px from (0,0), 3.2 px from (1,5)
    assert out[4, 2] == 2.0  # 4 px from (4,6), 4.2 px from (1,5), 4.5 px from (0,0)
    assert out[2, 5] == 3.0
    assert out[4, 6] == 2.0 and out[1, 5] == 3.0  # valid pixels untouched


def test_fill_holes_matches_brute_force_nearest():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:13, 0:17]
    for _ in range(30):
        d = (rng.random((13, 17)) + 0.1).astype(np.float32)
        d[rng.random(d.shape) < 0.85] = 0
        if not (d > 0).any():
            continue
        out = fill_holes(d)
        ys, xs = np.nonzero(d > 0)
        dist = np.hypot(yy[..., None] - ys, xx[..., None] - xs)  # 13 x 17 x n_valid
        nearest = dist.min(-1)
        # Distance to the valid pixel whose value was copied (values are unique floats).
        src = np.argmax(d[ys, xs][None, None, :] == out[..., None], axis=-1)
        chosen = np.take_along_axis(dist, src[..., None], -1)[..., 0]
        # OpenCV's 5x5 L2 mask is a close approximation of the exact distance.
        assert np.all(chosen <= nearest * 1.05 + 1e-6)


def test_fill_holes_no_holes_is_identity():
    d = np.full((4, 4), 0.5, np.float32)
    np.testing.assert_array_equal(fill_holes(d), d)


# --- load_depth -----------------------------------------------------------------------------

def _write_tiff(path, arr: np.ndarray) -> None:
    tifffile.imwrite(path, arr, photometric="minisblack", planarconfig="contig")


def _xyz(h: int = 6, w: int = 8) -> np.ndarray:
    xyz = np.zeros((h, w, 3), np.float32)
    xyz[..., 0], xyz[..., 1] = 0.01, -0.02
    xyz[..., 2] = np.linspace(0.4, 0.6, h * w, dtype=np.float32).reshape(h, w)
    xyz[0, 0] = 0  # a missing point
    return xyz


def test_load_depth_xyz_tiff_uses_z(tmp_path):
    xyz = _xyz()
    _write_tiff(tmp_path / "a.tiff", xyz)
    d = load_depth(tmp_path / "a.tiff")
    assert d.dtype == np.float32 and d.shape == (6, 8)
    np.testing.assert_array_equal(d, xyz[..., 2])
    assert d[0, 0] == 0


def test_load_depth_png_millimetres(tmp_path):
    mm = np.full((5, 7), 500, np.uint16)
    mm[1, 2] = 0
    mm[3, 3] = 1234
    cv2.imwrite(str(tmp_path / "d.png"), mm)
    d = load_depth(tmp_path / "d.png")
    assert d.dtype == np.float32
    assert d[0, 0] == pytest.approx(0.5) and d[3, 3] == pytest.approx(1.234) and d[1, 2] == 0


def test_load_depth_npy_and_2d_tiff(tmp_path):
    z = np.full((4, 5), 0.45, np.float64)
    np.save(tmp_path / "d.npy", z)
    tifffile.imwrite(tmp_path / "d.tif", z.astype(np.float32))
    for name in ("d.npy", "d.tif"):
        d = load_depth(tmp_path / name)
        assert d.dtype == np.float32 and d.shape == (4, 5)
        np.testing.assert_allclose(d, 0.45)


def test_load_depth_8bit_png_refused(tmp_path):
    cv2.imwrite(str(tmp_path / "d.png"), np.full((4, 4), 9, np.uint8))
    with pytest.raises(AnodetError, match="16-bit"):
        load_depth(tmp_path / "d.png")


@pytest.mark.parametrize("name", ["bad.png", "bad.tiff", "bad.npy"])
def test_load_depth_corrupt_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x89PNG not really an image")
    with pytest.raises(AnodetError, match=name):
        load_depth(tmp_path / name)


def test_load_depth_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(AnodetError, match="nope.tiff"):
        load_depth(tmp_path / "nope.tiff")
    (tmp_path / "d.exr").write_bytes(b"")
    with pytest.raises(AnodetError, match="unsupported"):
        load_depth(tmp_path / "d.exr")


def test_load_depth_wrong_shape_or_dtype(tmp_path):
    _write_tiff(tmp_path / "two.tiff", np.ones((4, 4, 2), np.float32))
    with pytest.raises(AnodetError, match="two.tiff"):
        load_depth(tmp_path / "two.tiff")
    _write_tiff(tmp_path / "int.tiff", np.ones((4, 4, 3), np.int32))
    with pytest.raises(AnodetError, match="floating point"):
        load_depth(tmp_path / "int.tiff")


@pytest.mark.parametrize("value", [0.0, np.nan, np.inf, -1.0])
def test_depth_without_valid_pixel_refused(tmp_path, value):
    np.save(tmp_path / "d.npy", np.full((4, 4), value, np.float32))
    with pytest.raises(AnodetError, match="no valid pixel"):
        load_depth(tmp_path / "d.npy")


def test_partial_nan_and_inf_become_missing():
    z = np.full((3, 3), 0.5, np.float32)
    z[0, 0], z[1, 1], z[2, 2] = np.nan, np.inf, -0.3
    d = to_depth(z)
    assert d[0, 0] == 0 and d[1, 1] == 0 and d[2, 2] == 0 and d[0, 1] == 0.5
    assert np.isnan(z[0, 0])  # the input is not modified


# --- plane, resize, frame -------------------------------------------------------------------

def test_remove_plane_removes_tilt():
    h, w = 40, 50
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    depth = 0.5 + 0.0004 * xx - 0.0002 * yy  # tilted work surface
    depth[15:25, 20:30] -= 0.01  # a part 1 cm tall
    depth[0, 0] = 0  # missing stays missing
    out = remove_plane(depth)
    surface = np.ones((h, w), bool)
    surface[15:25, 20:30] = False
    surface[0, 0] = False
    assert np.ptp(out[surface]) < 1e-5  # flat now (was 0.027 m)
    assert np.ptp(depth[surface]) > 0.02
    centre = out[surface].mean()
    assert centre == pytest.approx(0.5 + 0.0004 * (w / 2) - 0.0002 * (h / 2), abs=1e-4)
    np.testing.assert_allclose(out[15:25, 20:30], centre - 0.01, atol=1e-5)
    assert out[0, 0] == 0


def test_resize_depth_is_nearest():
    rng = np.random.default_rng(1)
    d = rng.choice([0.0, 0.4, 0.5], size=(37, 53)).astype(np.float32)
    for size in (16, 64, 100):
        out = resize_depth(d, size)
        assert out.shape == (size, size)
        assert set(np.unique(out)) <= {0.0, np.float32(0.4), np.float32(0.5)}
    m = resize_mask(d > 0.45, 16)
    assert m.dtype == bool and m.shape == (16, 16)


def test_prepare_frame_shapes_and_checks():
    spec = PreprocessSpec(image_size=32)
    rgb = np.zeros((24, 40, 3), np.uint8)
    depth = np.full((24, 40), 0.5, np.float32)
    depth[3, 3] = 0
    r, d = prepare_frame(rgb, depth, spec)
    assert r.shape == (32, 32, 3) and r.dtype == np.uint8
    assert d.shape == (32, 32) and d.dtype == np.float32 and (d > 0).all()  # holes filled
    r, d = prepare_frame(rgb, None, spec)
    assert d is None
    with pytest.raises(AnodetError, match="differ in size"):
        prepare_frame(rgb, depth[:, :30], spec)
    with pytest.raises(AnodetError, match="uint8"):
        prepare_frame(rgb.astype(np.float32), depth, spec)


def test_load_rgb_and_mask(tmp_path):
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "c.png"), bgr)
    assert load_rgb(tmp_path / "c.png")[0, 0].tolist() == [200, 0, 0]
    (tmp_path / "bad.png").write_bytes(b"junk")
    with pytest.raises(AnodetError, match="bad.png"):
        load_rgb(tmp_path / "bad.png")
    m = np.zeros((4, 5), np.uint8)
    m[1, 1] = 255
    cv2.imwrite(str(tmp_path / "m.png"), m)
    mask = load_mask(tmp_path / "m.png")
    assert mask.dtype == bool and mask.sum() == 1 and mask[1, 1]


def test_spec_round_trip():
    spec = PreprocessSpec(image_size=64, fill_holes=False, remove_plane=True, depth_sigma=1.5)
    assert PreprocessSpec.from_dict({**spec.to_dict(), "extra": 1}) == spec


# --- depth smoothing ------------------------------------------------------------------------

def test_smooth_depth_removes_z16_steps_and_keeps_a_dent():
    # A tilted plane in 1 mm steps (what z16 stores) with a 4 mm dent 12 px across.
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    true = 0.5 + 0.0002 * xx
    true -= 0.004 * np.exp(-((xx - 32) ** 2 + (yy - 32) ** 2) / (2 * 4.0**2))
    steps = np.round(true / 0.001) * 0.001
    out = smooth_depth(steps, 2.0)
    flat = (slice(6, 16), slice(8, -8))  # rows far from the dent
    assert np.abs(out - true)[flat].max() < 0.3 * np.abs(steps - true)[flat].max()
    def dent(d):  # centre against the mean of two points as far left and right: no slope
        return d[32, 32] - (d[32, 8] + d[32, 56]) / 2

    assert dent(true) < -0.0039 and dent(out) < -0.002  # most of the 4 mm dent stays


def test_smooth_depth_ignores_holes():
    d = np.full((20, 20), 0.5, np.float32)
    d[5:8, 5:8] = 0  # missing: must neither pull neighbours towards 0 nor get filled
    out = smooth_depth(d, 2.0)
    assert (out[5:8, 5:8] == 0).all()
    np.testing.assert_allclose(out[d > 0], 0.5, atol=1e-6)


def test_prepare_frame_smoothing_scales_sigma_to_the_frame():
    # The same scene at 64 px and 128 px must give (nearly) the same 32 px model input.
    rng = np.random.default_rng(0)
    small = (0.5 + 0.001 * rng.standard_normal((64, 64))).astype(np.float32)
    big = cv2.resize(small, (128, 128), interpolation=cv2.INTER_NEAREST)
    spec = PreprocessSpec(image_size=32, depth_sigma=1.5)
    rgb = np.zeros((64, 64, 3), np.uint8)
    _, a = prepare_frame(rgb, small, spec)
    _, b = prepare_frame(cv2.resize(rgb, (128, 128)), big, spec)
    _, raw = prepare_frame(rgb, small, PreprocessSpec(image_size=32))
    assert np.abs(a - b).max() < 0.25 * raw.std()
    assert a.std() < 0.5 * raw.std()  # and it smooths


def test_spec_without_depth_sigma_loads_as_before():
    old = {"image_size": 64, "fill_holes": True, "remove_plane": False}  # an older artifact
    assert PreprocessSpec.from_dict(old).depth_sigma == 0.0


def test_local_relief_removes_pose_and_keeps_a_dent():
    from anodet.relief import local_relief

    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
    tilted = 0.5 + 0.0001 * xx + 0.00005 * yy  # 2.5 cm across the frame
    dent = 0.002 * np.clip(1 - ((xx - 128) ** 2 + (yy - 128) ** 2) / 6**2, 0, 1) ** 2
    depth = (tilted + dent).astype(np.float32)
    depth[5, 5] = 0.0  # a hole stays a hole and pulls nothing
    rel = local_relief(depth, 16.0)
    assert rel[5, 5] == 0.0 and (rel[depth > 0] > 0).all()
    # Away from the image border (where reflection bends a ramp) the tilt is gone ...
    inner, near = rel[64:192, 64:192], np.hypot(xx[64:192, 64:192] - 128, yy[64:192, 64:192] - 128)
    inner = inner - np.median(inner)
    assert np.abs(inner[near > 40]).max() < 3e-5
    assert inner[64, 64] > 0.0015  # ... and most of the 2 mm dent stays


def test_prepare_frame_relief_is_taken_at_model_size_whatever_the_camera_resolution():
    _yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
    depth = (0.5 + 0.0001 * xx + 0.001 * np.sin(xx / 9.0)).astype(np.float32)
    rgb = np.zeros((256, 256, 3), np.uint8)
    spec = PreprocessSpec(image_size=64, depth_relief_sigma=4.0)
    _, big = prepare_frame(rgb, depth, spec)
    _, small = prepare_frame(rgb[::4, ::4].copy(), depth[::4, ::4].copy(), spec)
    assert np.abs((big - big.mean()) - (small - small.mean()))[8:-8, 8:-8].max() < 2e-4
    assert PreprocessSpec.from_dict({"image_size": 64}).depth_relief_sigma == 0.0


def test_robust_relief_is_not_bent_by_a_machined_step():
    from anodet.relief import local_relief

    _, xx = np.mgrid[0:128, 0:256].astype(np.float32)
    depth = (0.5 + 0.00005 * xx - 0.006 * (xx > 128)).astype(np.float32)  # tilted face, 6 mm step
    face = slice(100, 116)  # the face just left of the step
    plain = local_relief(depth, 16.0)
    robust = local_relief(depth, 16.0, step_m=0.0015)
    band = lambda r: np.abs(r[40:88, face] - np.median(r[40:88, 20:60]))
    assert band(plain).max() > 0.001  # the flat fit bends towards the other side of the step
    assert band(robust).max() < 5e-4
