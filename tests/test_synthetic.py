"""The synthetic RGB-D generator: layout, defect visibility per modality, determinism."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tifffile

from anodet.data import discover, load_gt, load_sample, make_frame, write_dataset
from anodet.data.synthetic import DEFECT_TYPES, PLANE_Z, TEST_TYPES
from anodet.errors import AnodetError
from anodet.preprocess import PreprocessSpec, load_depth

SIZE = 64


def _frames(seed: int) -> dict:
    return {d: make_frame(np.random.default_rng(seed), SIZE, d) for d in (None, *DEFECT_TYPES)}


def test_frame_shapes_and_ranges():
    rgb, depth, mask = make_frame(np.random.default_rng(0), SIZE, None)
    assert rgb.shape == (SIZE, SIZE, 3) and rgb.dtype == np.uint8
    assert depth.shape == (SIZE, SIZE) and depth.dtype == np.float32
    assert mask.shape == (SIZE, SIZE) and mask.dtype == bool and not mask.any()
    valid = depth > 0
    assert 0.003 < 1 - valid.mean() < 0.06  # speckle and steep-wall dropout
    assert PLANE_Z - 0.03 < depth[valid].min() and depth[valid].max() < PLANE_Z + 0.01
    assert np.ptp(depth[valid]) > 0.015  # the part stands ~2 cm above the surface
    assert rgb.std() > 10  # textured, not a flat image


@pytest.mark.parametrize("seed", range(4))
def test_defects_show_only_in_their_modality(seed):
    f = _frames(seed)
    rgb0, depth0, _ = f[None]
    for kind in DEFECT_TYPES:
        assert f[kind][2].sum() >= 3, kind
    rgb, depth, mask = f["geometry"]
    np.testing.assert_array_equal(rgb, rgb0)  # shading ignores the dent: RGB bit-identical
    changed = np.abs(depth - depth0) > 0.0005
    assert changed[mask & (depth > 0)].mean() > 0.5
    rgb, depth, mask = f["colour"]
    np.testing.assert_array_equal(depth, depth0)  # a stain has no relief
    assert (np.abs(rgb.astype(int) - rgb0).max(-1) > 8)[mask].mean() > 0.5
    rgb, depth, mask = f["crack"]
    assert (np.abs(rgb.astype(int) - rgb0).max(-1) > 8)[mask].mean() > 0.5
    assert (depth != depth0)[mask].mean() > 0.5


def test_make_frame_deterministic_and_varied():
    a = make_frame(np.random.default_rng(7), SIZE, "crack")
    b = make_frame(np.random.default_rng(7), SIZE, "crack")
    c = make_frame(np.random.default_rng(8), SIZE, "crack")
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[2], c[2])


def test_make_frame_rejects_unknown_defect():
    with pytest.raises(AnodetError, match="colour, geometry, crack"):
        make_frame(np.random.default_rng(0), SIZE, "scratch")
    assert not make_frame(np.random.default_rng(0), SIZE, "good")[2].any()


def test_written_dataset_is_discoverable(tmp_path):
    root = write_dataset(tmp_path, size=SIZE, n_train=6, n_val=2, n_test_per_type=2)
    assert root == tmp_path / "widget"
    ds = discover(root)
    assert ds.layout == "mvtec3d"
    assert (len(ds.train), len(ds.val), len(ds.test)) == (6, 2, 8)
    assert sorted({s.defect_type for s in ds.test}) == sorted(TEST_TYPES)
    for s in ds.test:
        assert s.mask_path is not None
        gt = load_gt(s)
        assert gt.shape == (SIZE, SIZE) and gt.any() == bool(s.label)
    xyz = tifffile.imread(ds.train[0].depth_path)
    assert xyz.shape == (SIZE, SIZE, 3) and xyz.dtype == np.float32
    missing = xyz[..., 2] == 0
    assert missing.any() and not xyz[missing].any()  # missing points are all zero
    assert np.ptp(xyz[~missing, 0]) > 0.1  # x spans the ~0.2 m view
    rgb, depth, mask = load_sample(ds.test[-1], PreprocessSpec(image_size=32))
    assert rgb.shape == (32, 32, 3) and depth.shape == (32, 32) and mask.shape == (32, 32)
    gt = cv2.imread(str(ds.test[-1].mask_path), cv2.IMREAD_GRAYSCALE)
    assert set(np.unique(gt)) <= {0, 255}


def test_written_dataset_deterministic_and_replaced(tmp_path):
    a = write_dataset(tmp_path / "a", size=SIZE, n_train=2, n_val=0, n_test_per_type=1, seed=5)
    b = write_dataset(tmp_path / "b", size=SIZE, n_train=2, n_val=0, n_test_per_type=1, seed=5)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert not (a / "validation").exists()  # n_val=0: discover splits train instead
    # Rewriting with fewer images replaces the old set instead of mixing with it.
    write_dataset(tmp_path / "a", size=SIZE, n_train=1, n_val=0, n_test_per_type=1, seed=6)
    assert len(list((a / "train" / "good" / "rgb").iterdir())) == 1
    depth = load_depth(a / "test" / "geometry" / "xyz" / "000.tiff")
    assert depth.shape == (SIZE, SIZE)


def test_write_refuses_foreign_directory(tmp_path):
    (tmp_path / "widget").mkdir()
    (tmp_path / "widget" / "notes.txt").write_text("mine")
    with pytest.raises(AnodetError, match="not a synthetic"):
        write_dataset(tmp_path, size=SIZE, n_train=1)
    assert (tmp_path / "widget" / "notes.txt").exists()
    with pytest.raises(AnodetError, match="n_train"):
        write_dataset(tmp_path / "x", n_train=0)


def test_depth_noise_level():
    _, depth, _ = make_frame(np.random.default_rng(1), 128, None)
    corner = depth[:12, :12]  # work surface, away from the part
    diffs = np.diff(corner, axis=1)[(corner[:, 1:] > 0) & (corner[:, :-1] > 0)]
    assert 0.0004 < diffs.std() / np.sqrt(2) < 0.0006  # about 0.5 mm per pixel
