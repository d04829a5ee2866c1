"""Shared fixtures: a tiny synthetic RGB-D dataset, a tiny config and a trained checkpoint.

Everything is small (64 px images, ResNet-18, a few epochs) so the whole suite stays within
minutes on two CPU cores; the real-size numbers live in benchmarks/.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

TINY = {
    "preset": "rgbd_full",
    "data": {"image_size": 64},
    "model": {"backbone": "resnet18", "feature_size": 16, "reduce_channels": 16, "latent_dim": 16,
              "blur_sigma": 1.0},
    "train": {"epochs": 8, "patience": 50, "pixels_per_image": 256, "batch_size": 512},
}


def tiny_raw(**sections) -> dict:
    """The tiny config as a dict, with optional section overrides (``preset=`` replaces it)."""
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in TINY.items()}
    for name, values in sections.items():
        if name == "preset":
            raw["preset"] = values
        else:
            raw[name].update(values)
    return raw


def tiny_config(**sections):
    """The tiny config as an ExperimentConfig, with optional section overrides."""
    from anodet.config import from_dict

    return from_dict(tiny_raw(**sections))


@pytest.fixture(scope="session")
def tiny_yaml(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory) -> Path:
    """A 64 px synthetic MVTec 3D-AD-layout category: 16 train, 4 val, 4 test per type."""
    from anodet.data.synthetic import write_dataset

    return write_dataset(tmp_path_factory.mktemp("synth"), size=64, n_train=16, n_val=4, n_test_per_type=4, seed=3)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, synth_data) -> Path:
    """Experiment folder of a tiny rgbd_full model trained on ``synth_data``."""
    from anodet.train import train

    out = tmp_path_factory.mktemp("exp")
    train(tiny_config(), synth_data, out, weights="none", device="cpu")
    return out


@pytest.fixture(scope="session")
def exported(tmp_path_factory, trained) -> Path:
    """The tiny model exported to ONNX with a dynamic batch."""
    from anodet.export.onnx import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(trained / "checkpoints" / "best.pt", out, batch=None)
    return out
