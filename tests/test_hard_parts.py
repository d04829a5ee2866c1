"""The hard synthetic suite: families show in the modality they claim, params are checked, CLI layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from anodet.cli import synth_cmd
from anodet.data import discover
from anodet.data.hard_parts import HARD_DEFECT_TYPES, HardParams, hard_params, make_hard_frame
from anodet.data.synthetic import write_dataset
from anodet.errors import AnodetError

SIZE = 128


def _frames(seed: int, **params) -> dict:
    p = HardParams(**params)
    return {d: make_hard_frame(np.random.default_rng(seed), SIZE, d, params=p) for d in (None, *HARD_DEFECT_TYPES)}


@pytest.mark.parametrize("seed", range(3))
def test_families_show_where_they_claim(seed):
    f = _frames(seed)
    rgb0, depth0, mask0 = f[None]
    assert not mask0.any() and rgb0.dtype == np.uint8 and depth0.dtype == np.float32
    rgb, depth, mask = f["dent"]
    assert mask.sum() >= 10 and np.array_equal(rgb, rgb0)  # depth only: the shading ignores the dent
    assert not np.array_equal(depth, depth0)
    rgb, depth, mask = f["scratch"]
    assert mask.sum() >= 5 and np.array_equal(depth, depth0)  # colour only
    assert np.abs(rgb.astype(int) - rgb0).max() > 5
    rgb, depth, mask = f["chip"]
    assert mask.sum() >= 3 and not np.array_equal(rgb, rgb0) and not np.array_equal(depth, depth0)


def test_camera_depth_by_default_and_dent_depth_is_a_parameter():
    _rgb, depth, _ = make_hard_frame(np.random.default_rng(0), SIZE)
    steps = depth[depth > 0] / 0.001
    assert np.allclose(steps, np.round(steps), atol=1e-3)  # D435: whole millimetres
    assert (depth == 0).mean() > 0.005  # speckle, shadows beside the rib
    shallow = _frames(1, dent_depth_mm=(0.5, 0.5))["dent"]
    deep = _frames(1, dent_depth_mm=(4.0, 4.0))["dent"]
    good = _frames(1)[None]
    d_shallow = np.abs(shallow[1] - good[1])[shallow[2]].mean()
    d_deep = np.abs(deep[1] - good[1])[deep[2]].mean()
    assert d_deep > 3 * d_shallow


def test_params_are_checked():
    with pytest.raises(AnodetError, match="dent_depth_mm"):
        HardParams(dent_depth_mm=(3.0, 1.0)).check()
    with pytest.raises(AnodetError, match="MIN,MAX"):
        hard_params(dent_depth_mm="2")
    assert hard_params() is None
    assert hard_params(chip_radius_px="2,3", rotation_deg=90.0) == HardParams(chip_radius_px=(2.0, 3.0), rotation_deg=90.0)
    with pytest.raises(AnodetError, match="valid: dent, scratch, chip"):
        make_hard_frame(np.random.default_rng(0), SIZE, "geometry")


def test_write_hard_dataset_and_cli(tmp_path):
    root = write_dataset(tmp_path / "a", size=SIZE, n_train=2, n_val=0, n_test_per_type=1, difficulty="hard")
    assert root.name == "bracket"
    ds = discover(root)
    assert sorted({s.defect_type for s in ds.test}) == sorted(("good", *HARD_DEFECT_TYPES))
    marker = json.loads((root / "anodet_synthetic.json").read_text())
    assert marker["difficulty"] == "hard" and marker["sensor"] == "d435" and marker["hard"]["dent_depth_mm"] == [1.0, 3.0]
    res = CliRunner().invoke(synth_cmd, [str(tmp_path / "b"), "--size", str(SIZE), "--train", "1", "--val", "0",
                                         "--test", "1", "--difficulty", "hard", "--dent-depth", "0.5,1"])
    assert res.exit_code == 0, res.output
    marker = json.loads((tmp_path / "b" / "bracket" / "anodet_synthetic.json").read_text())
    assert marker["hard"]["dent_depth_mm"] == [0.5, 1.0]
    res = CliRunner().invoke(synth_cmd, [str(tmp_path / "c"), "--dent-depth", "1,2"])
    assert res.exit_code == 2 and "--difficulty hard" in res.output
