"""Dataset discovery (MVTec 3D-AD and folder layouts) and sample loading, on tiny fixtures."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from anodet.data import Dataset, describe, discover, load_gt, load_sample
from anodet.errors import AnodetError
from anodet.preprocess import PreprocessSpec

H, W = 24, 32  # non-square on purpose: catches swapped axes
SPEC = PreprocessSpec(image_size=32)


def _rgb(path: Path, value: int = 120) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((H, W, 3), value, np.uint8))


def _depth(path: Path, z: float = 0.5, h: int = H, w: int = W) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    depth = np.full((h, w), z, np.float32)
    depth[0, 0] = 0  # one missing pixel
    suffix = path.suffix
    if suffix == ".png":
        cv2.imwrite(str(path), np.round(depth * 1000).astype(np.uint16))
    elif suffix == ".npy":
        np.save(path, depth)
    else:  # MVTec-style organized point cloud
        xyz = np.dstack([np.zeros_like(depth), np.zeros_like(depth), depth])
        tifffile.imwrite(path, xyz, photometric="minisblack", planarconfig="contig")


def _mask(path: Path, on: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((H, W), np.uint8)
    if on:
        m[5:10, 8:20] = 255
    cv2.imwrite(str(path), m)


def _mvtec_split(folder: Path, n: int, gt: bool | None = None) -> None:
    for i in range(n):
        _rgb(folder / "rgb" / f"{i:03d}.png")
        _depth(folder / "xyz" / f"{i:03d}.tiff")
        if gt is not None:
            _mask(folder / "gt" / f"{i:03d}.png", gt)


@pytest.fixture
def mvtec(tmp_path: Path) -> Path:
    cat = tmp_path / "bagel"
    _mvtec_split(cat / "train" / "good", 5)
    _mvtec_split(cat / "validation" / "good", 2)
    _mvtec_split(cat / "test" / "good", 2, gt=False)
    _mvtec_split(cat / "test" / "crack", 2, gt=True)
    _mvtec_split(cat / "test" / "hole", 1)  # no gt/ folder: masks unknown
    return cat


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "line3"
    for i in range(10):
        _rgb(root / "train" / "normal" / "rgb" / f"{i}.png")
        _depth(root / "train" / "normal" / "depth" / f"{i}.png", z=0.5)  # 16-bit mm
    for i in range(2):
        _rgb(root / "test" / "normal" / "rgb" / f"n{i}.png")
        _depth(root / "test" / "normal" / "depth" / f"n{i}.npy")
        scratch = root / "test" / "anomaly" / "scratch"
        _rgb(scratch / "rgb" / f"s{i}.png")
        _depth(scratch / "depth" / f"s{i}.tiff")
        _mask(scratch / "ground_truth" / f"s{i}_mask.png", True)
    direct = root / "test" / "anomaly"
    _rgb(direct / "rgb" / "a0.jpg")
    _depth(direct / "depth" / "a0.npy")
    _mask(direct / "ground_truth" / "a0.png", True)
    _rgb(direct / "rgb" / "a1.png")  # anomalous without a mask
    _depth(direct / "depth" / "a1.npy")
    return root


# --- MVTec 3D-AD ----------------------------------------------------------------------------

def test_mvtec_discover_counts_and_types(mvtec):
    ds = discover(mvtec)
    assert isinstance(ds, Dataset) and ds.layout == "mvtec3d" and ds.root == mvtec
    assert (len(ds.train), len(ds.val), len(ds.test)) == (5, 2, 5)
    assert [s.rgb_path.name for s in ds.train] == [f"{i:03d}.png" for i in range(5)]
    assert all(s.depth_path.suffix == ".tiff" and s.label == 0 for s in ds.train + ds.val)
    by_type = {}
    for s in ds.test:
        by_type.setdefault(s.defect_type, []).append(s)
    assert sorted(by_type) == ["crack", "good", "hole"]
    assert all(s.label == 0 and s.mask_path is not None for s in by_type["good"])
    assert all(s.label == 1 and s.mask_path is not None for s in by_type["crack"])
    assert by_type["hole"][0].label == 1 and by_type["hole"][0].mask_path is None
    line = describe(ds)
    assert line.startswith(f"MVTec 3D-AD layout at {mvtec}: 5 train, 2 val, 5 test")
    assert line.endswith("(good 2, crack 2, hole 1)")


def test_mvtec_auto_val_split_is_deterministic(mvtec):
    import shutil

    shutil.rmtree(mvtec / "validation")
    _mvtec_split(mvtec / "train" / "good", 10)
    a = discover(mvtec, val_fraction=0.2, seed=3)
    b = discover(mvtec, val_fraction=0.2, seed=3)
    assert (len(a.train), len(a.val)) == (8, 2)
    assert a.val == b.val and a.train == b.train
    names = {s.rgb_path.name for s in a.train} | {s.rgb_path.name for s in a.val}
    assert len(names) == 10  # a partition of the training images
    seeds = {tuple(s.rgb_path.name for s in discover(mvtec, seed=k).val) for k in range(6)}
    assert len(seeds) > 1  # the seed matters
    assert discover(mvtec, val_fraction=0.0).val == []
    with pytest.raises(AnodetError, match="val_fraction"):
        discover(mvtec, val_fraction=1.0)


def test_mvtec_missing_depth_names_file(mvtec):
    (mvtec / "train" / "good" / "xyz" / "003.tiff").unlink()
    with pytest.raises(AnodetError, match="003.png"):
        discover(mvtec)
    ds = discover(mvtec, need_depth=False)  # RGB-only presets do not need depth
    missing = [s for s in ds.train + ds.val if s.depth_path is None]
    assert [s.rgb_path.name for s in missing] == ["003.png"]
    rgb, depth, mask = load_sample(missing[0], SPEC, need_depth=False)
    assert rgb.shape == (32, 32, 3) and depth is None and not mask.any()
    with pytest.raises(AnodetError, match="003.png"):
        load_sample(missing[0], SPEC)


def test_rgb_only_dataset_without_any_depth(tmp_path):
    for i in range(3):
        _rgb(tmp_path / "train" / "normal" / "rgb" / f"{i}.png")
    ds = discover(tmp_path, need_depth=False)
    assert len(ds.train) + len(ds.val) == 3 and ds.test == []
    with pytest.raises(AnodetError, match="0.png"):
        discover(tmp_path)


def test_empty_train_split(mvtec):
    for p in (mvtec / "train" / "good" / "rgb").iterdir():
        p.unlink()
    with pytest.raises(AnodetError, match=r"no training images in .*train/good/rgb"):
        discover(mvtec)


def test_wrong_layout_and_missing_root(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(AnodetError, match="MVTec 3D-AD") as err:
        discover(tmp_path)
    assert "folder layout" in str(err.value) and str(tmp_path) in str(err.value)
    with pytest.raises(AnodetError, match="does not exist"):
        discover(tmp_path / "nowhere")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(AnodetError, match="not a directory"):
        discover(tmp_path / "file.txt")


def test_mvtec_root_instead_of_category(mvtec):
    with pytest.raises(AnodetError, match="bagel"):
        discover(mvtec.parent)


def test_empty_or_malformed_test_split(mvtec):
    (mvtec / "test" / "scratch" / "images").mkdir(parents=True)
    with pytest.raises(AnodetError, match="scratch"):
        discover(mvtec)
    import shutil

    shutil.rmtree(mvtec / "test")
    (mvtec / "test").mkdir()
    with pytest.raises(AnodetError, match="holds no images"):
        discover(mvtec)
    shutil.rmtree(mvtec / "test")
    assert discover(mvtec).test == []  # training-only datasets are fine


def test_load_sample_mvtec(mvtec):
    ds = discover(mvtec)
    crack = next(s for s in ds.test if s.defect_type == "crack")
    rgb, depth, mask = load_sample(crack, SPEC)
    assert rgb.shape == (32, 32, 3) and rgb.dtype == np.uint8
    assert depth.shape == (32, 32) and depth.dtype == np.float32
    np.testing.assert_allclose(depth, 0.5)  # the missing pixel was filled
    assert mask.shape == (32, 32) and mask.dtype == bool and mask.any()
    gt = load_gt(crack)
    assert gt.shape == (H, W) and gt.sum() == 5 * 12
    hole = next(s for s in ds.test if s.defect_type == "hole")
    assert load_sample(hole, SPEC)[2] is None and load_gt(hole) is None
    good = next(s for s in ds.test if s.defect_type == "good")
    assert not load_gt(good).any()
    raw = load_sample(crack, PreprocessSpec(image_size=32, fill_holes=False))[1]
    assert (raw == 0).sum() >= 1  # without filling, missing stays 0


def test_load_sample_size_mismatch_names_file(mvtec):
    _depth(mvtec / "train" / "good" / "xyz" / "001.tiff", h=H, w=W + 4)
    sample = next(s for s in discover(mvtec).train + discover(mvtec).val
                  if s.rgb_path.name == "001.png")
    with pytest.raises(AnodetError, match="001.tiff"):
        load_sample(sample, SPEC)


# --- folder layout --------------------------------------------------------------------------

def test_folder_discover(folder):
    ds = discover(folder, seed=1)
    assert ds.layout == "folder"
    assert (len(ds.train), len(ds.val), len(ds.test)) == (8, 2, 6)
    types = sorted({(s.defect_type, s.label) for s in ds.test})
    assert types == [("anomaly", 1), ("good", 0), ("scratch", 1)]
    masks = {s.rgb_path.name: s.mask_path for s in ds.test}
    assert masks["s0.png"].name == "s0_mask.png" and masks["a0.jpg"].name == "a0.png"
    assert masks["a1.png"] is None and masks["n0.png"] is None
    assert {s.depth_path.suffix for s in ds.test} == {".npy", ".tiff"}
    assert describe(ds).startswith(f"folder layout at {folder}: 8 train, 2 val, 6 test")
    assert "(good 2, anomaly 2, scratch 2)" in describe(ds)


def test_folder_explicit_val_and_sorting(folder):
    for i in range(3):
        _rgb(folder / "val" / "normal" / "rgb" / f"{i}.png")
        _depth(folder / "val" / "normal" / "depth" / f"{i}.png")
    ds = discover(folder)
    assert (len(ds.train), len(ds.val)) == (10, 3)
    assert [s.rgb_path.stem for s in ds.train] == [str(i) for i in range(10)]  # 2 before 10


def test_folder_load_sample_units_and_masks(folder):
    ds = discover(folder)
    for s in ds.train[:2] + ds.test:
        rgb, depth, mask = load_sample(s, SPEC)
        assert rgb.shape == (32, 32, 3) and rgb.dtype == np.uint8
        assert depth.shape == (32, 32) and depth.dtype == np.float32
        np.testing.assert_allclose(depth, 0.5, atol=1e-6)  # PNG millimetres -> metres
        if s.rgb_path.name == "a1.png":
            assert mask is None
        else:
            assert mask.shape == (32, 32) and mask.any() == bool(s.label)
        gt = load_gt(s)
        assert gt is None if s.rgb_path.name == "a1.png" else gt.shape == (H, W)


def test_folder_defect_dir_without_rgb(folder):
    (folder / "test" / "anomaly" / "dent" / "images").mkdir(parents=True)
    with pytest.raises(AnodetError, match="dent"):
        discover(folder)


def test_folder_missing_depth_in_test(folder):
    (folder / "test" / "anomaly" / "scratch" / "depth" / "s1.tiff").unlink()
    with pytest.raises(AnodetError, match="s1.png"):
        discover(folder)
    assert len(discover(folder, need_depth=False).test) == 6
