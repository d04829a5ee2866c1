"""PyTorch model: frozen backbone, fixed aligner, 1x1-conv autoencoder, scoring."""

from anodet.models.detector import Detector, build_detector, load_detector

__all__ = ["Detector", "build_detector", "load_detector"]
