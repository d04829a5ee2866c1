"""Make a tiny real anodet export for the packaging check: synthetic data, a few epochs, ONNX.

    python scripts/tiny_export.py DATA_DIR MODEL.onnx
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from anodet.config import from_dict
from anodet.data.synthetic import write_dataset
from anodet.export.onnx import export_onnx
from anodet.train import train

TINY = {"data": {"image_size": 64},
        "model": {"backbone": "resnet18", "feature_size": 16, "reduce_channels": 16, "latent_dim": 16,
                  "blur_sigma": 1.0},
        "train": {"epochs": 4, "pixels_per_image": 256, "batch_size": 512}}


def main(data: Path, model: Path) -> None:
    category = data / "widget"
    if not category.is_dir():
        write_dataset(data, size=64, n_train=12, n_val=4, n_test_per_type=2, seed=0)
    with tempfile.TemporaryDirectory() as exp:
        res = train(from_dict(TINY), category, Path(exp) / "exp", weights="none", device="cpu")
        export_onnx(res.best_checkpoint, model, batch=None, force=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
