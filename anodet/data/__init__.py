"""Datasets on disk (MVTec 3D-AD and folder layouts) and the synthetic RGB-D generator."""

from anodet.data.samples import Dataset, Sample, describe, discover, load_gt, load_sample
from anodet.data.synthetic import make_frame, write_dataset

__all__ = [
    "Dataset", "Sample", "describe", "discover", "load_gt", "load_sample", "make_frame",
    "write_dataset",
]
