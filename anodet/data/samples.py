"""Dataset discovery and loading for the two supported on-disk layouts.

MVTec 3D-AD, one *category* directory (depth is the z channel of the ``xyz`` point cloud)::

    <cat>/train/good/{rgb,xyz}/000.png, 000.tiff
    <cat>/validation/good/{rgb,xyz}/       optional: else val_fraction of train is held out
    <cat>/test/<type>/{rgb,xyz,gt}/        type "good" is normal, every other type anomalous

Folder layout (depth: 16-bit PNG in millimetres, or ``.tiff``/``.tif``/``.npy`` in metres)::

    <root>/train/normal/{rgb,depth}/
    <root>/val/normal/{rgb,depth}/         optional: else val_fraction of train is held out
    <root>/test/normal/{rgb,depth}/
    <root>/test/anomaly/{rgb,depth,ground_truth}/         defect type "anomaly", and/or
    <root>/test/anomaly/<type>/{rgb,depth,ground_truth}/  one sub-folder per defect type

Masks sit in a ``ground_truth/`` folder next to the ``rgb/`` folder they annotate (as MVTec's
``gt/``); a mask matches an RGB image by stem, optionally with a ``_mask`` suffix
(``000.png`` or ``000_mask.png``, any image format). Depth pairs with RGB by stem.
Anomalous images without a mask are kept with ``mask_path=None`` (image metrics still work).
A dataset without ``test/`` is valid for training; an existing but empty ``test/`` is refused.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anodet.errors import AnodetError
from anodet.preprocess import (
    DEPTH_SUFFIXES,
    RGB_SUFFIXES,
    PreprocessSpec,
    load_depth,
    load_mask,
    load_rgb,
    prepare_frame,
    resize_mask,
)

log = logging.getLogger(__name__)
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")
LAYOUT_NAMES = {"mvtec3d": "MVTec 3D-AD layout", "folder": "folder layout"}
_EXPECTED = (
    "expected an MVTec 3D-AD category (train/good/{rgb,xyz}, test/<type>/{rgb,xyz,gt}) "
    "or a folder layout (train/normal/{rgb,depth}, test/normal, test/anomaly)"
)


@dataclass(frozen=True)
class Sample:
    """One RGB(-D) image; ``label`` is 0 for normal, 1 for anomalous."""

    rgb_path: Path
    depth_path: Path | None
    mask_path: Path | None
    label: int
    defect_type: str  # "good" for normal images


@dataclass(frozen=True)
class Dataset:
    root: Path
    layout: str  # "mvtec3d" or "folder"
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]


def _natural_key(path: Path) -> list:
    # "2.png" before "10.png", so splits and listings follow the capture order.
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        return []
    found = [
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes
    ]
    return sorted(found, key=_natural_key)


def _by_stem(files: list[Path], strip: str = "") -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in files:
        out.setdefault(p.stem, p)
        if strip and p.stem.endswith(strip):
            out.setdefault(p.stem[: -len(strip)], p)
    return out


def _scan(folder: Path, depth_dir: str, mask_dir: str, label: int, defect_type: str,
          need_depth: bool) -> list[Sample]:
    """Samples of one ``folder`` holding ``rgb/``, ``<depth_dir>/`` and maybe ``<mask_dir>/``."""
    # Depth suffix order decides which file wins if two share a stem (tiff before png).
    depth_files = sorted(_files(folder / depth_dir, DEPTH_SUFFIXES),
                         key=lambda p: DEPTH_SUFFIXES.index(p.suffix.lower()))
    depths = _by_stem(depth_files)
    masks = _by_stem(_files(folder / mask_dir, MASK_SUFFIXES), strip="_mask")
    samples = []
    for rgb in _files(folder / "rgb", RGB_SUFFIXES):
        depth = depths.get(rgb.stem)
        if depth is None and need_depth:
            raise AnodetError(
                f"RGB image {rgb} has no depth file {folder / depth_dir / rgb.stem}"
                f"{{{','.join(DEPTH_SUFFIXES)}}}; add it or use an RGB-only preset (rgb_baseline)"
            )
        samples.append(Sample(rgb, depth, masks.get(rgb.stem), label, defect_type))
    return samples


def _split_val(train: list[Sample], fraction: float, seed: int) -> tuple[list, list]:
    n = len(train)
    n_val = round(n * fraction)
    if fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)  # keep at least one image on each side
    else:
        n_val = 0
    held = set(np.random.default_rng(seed).permutation(n)[:n_val].tolist())
    return ([s for i, s in enumerate(train) if i not in held],
            [s for i, s in enumerate(train) if i in held])


def _subdirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=_natural_key)


def _discover_mvtec(root: Path, need_depth: bool) -> tuple[list, list | None, list]:
    train = _scan(root / "train" / "good", "xyz", "gt", 0, "good", need_depth)
    val = None
    if (root / "validation" / "good").is_dir():
        val = _scan(root / "validation" / "good", "xyz", "gt", 0, "good", need_depth)
    test = []
    if (root / "test").is_dir():
        for sub in _subdirs(root / "test"):
            if not (sub / "rgb").is_dir():
                raise AnodetError(f"test folder {sub} has no rgb/ folder; {_EXPECTED}")
            label = 0 if sub.name == "good" else 1
            test += _scan(sub, "xyz", "gt", label, sub.name, need_depth)
    return train, val, test


def _discover_folder(root: Path, need_depth: bool) -> tuple[list, list | None, list]:
    def scan(folder: Path, label: int, kind: str) -> list[Sample]:
        return _scan(folder, "depth", "ground_truth", label, kind, need_depth)

    train = scan(root / "train" / "normal", 0, "good")
    val = scan(root / "val" / "normal", 0, "good") if (root / "val" / "normal").is_dir() else None
    test = []
    if (root / "test").is_dir():
        test += scan(root / "test" / "normal", 0, "good")
        anomaly = root / "test" / "anomaly"
        if anomaly.is_dir():
            test += scan(anomaly, 1, "anomaly")  # images directly under test/anomaly/rgb
            for sub in _subdirs(anomaly):
                if sub.name in ("rgb", "depth", "ground_truth"):
                    continue
                if not (sub / "rgb").is_dir():
                    raise AnodetError(f"defect folder {sub} has no rgb/ folder; {_EXPECTED}")
                test += scan(sub, 1, sub.name)
    return train, val, test


def discover(root: str | Path, *, need_depth: bool = True, val_fraction: float = 0.2,
             seed: int = 0, need_train: bool = True) -> Dataset:
    """Find the images of a dataset in either layout (detected from the folder names).

    ``root`` may also be a ``.db3``/``.bag`` RealSense recording of good parts
    (``anodet.data.recording``). Without a validation split, ``val_fraction`` of the training
    images is held out,
    chosen by ``seed``. ``need_depth=False`` (RGB-only models) accepts missing depth files.
    ``need_train=False`` (evaluation, benchmarks) accepts a folder with only a test split, such
    as one ``anodet-capture --split test/...`` wrote.
    """
    root = Path(root)
    if not root.exists():
        raise AnodetError(f"dataset root {root} does not exist")
    if root.suffix.lower() in (".db3", ".bag") and root.is_file():
        from anodet.data.recording import recording_dataset  # pyrealsense2 only when needed

        root = recording_dataset(root)  # a recording of good parts: train/normal only
    if not root.is_dir():
        raise AnodetError(f"dataset root {root} is not a directory; {_EXPECTED}")
    if not 0.0 <= val_fraction < 1.0:
        raise AnodetError(f"val_fraction must be in [0, 1), got {val_fraction}")
    test_only = not need_train and not (root / "train").is_dir()
    if (root / "train" / "good").is_dir() or (test_only and (root / "test" / "good").is_dir()):
        layout, train_dir = "mvtec3d", root / "train" / "good" / "rgb"
        train, val, test = _discover_mvtec(root, need_depth)
    elif (root / "train" / "normal").is_dir() or (
            test_only and any((root / "test" / d).is_dir() for d in ("normal", "anomaly"))):
        layout, train_dir = "folder", root / "train" / "normal" / "rgb"
        train, val, test = _discover_folder(root, need_depth)
    else:
        cats = [p.name for p in _subdirs(root) if (p / "train" / "good").is_dir()]
        hint = f" (it holds MVTec 3D-AD categories {', '.join(cats[:5])}; pass one)" if cats else ""
        raise AnodetError(f"{root} is in no known dataset layout{hint}; {_EXPECTED}")
    if not train and need_train:
        raise AnodetError(f"no training images in {train_dir} (expected {', '.join(RGB_SUFFIXES)})")
    if (root / "test").is_dir() and not test:
        raise AnodetError(f"test split {root / 'test'} holds no images; {_EXPECTED}")
    if val is None:
        train, val = _split_val(train, val_fraction, seed)
    return Dataset(root, layout, train, val, test)


def describe(ds: Dataset) -> str:
    """One line: layout, root, split sizes and test images per defect type."""
    counts = Counter(s.defect_type for s in ds.test)
    types = sorted(counts, key=lambda t: (t != "good", t))
    per_type = ", ".join(f"{t} {counts[t]}" for t in types)
    tail = f" ({per_type})" if per_type else ""
    return (f"{LAYOUT_NAMES.get(ds.layout, ds.layout)} at {ds.root}: {len(ds.train)} train, "
            f"{len(ds.val)} val, {len(ds.test)} test{tail}")


def load_sample(sample: Sample, spec: PreprocessSpec, *, need_depth: bool = True,
                depth_transform: Callable[[np.ndarray], np.ndarray] | None = None,
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Load and preprocess one sample at the model input size S = ``spec.image_size``.

    Returns rgb uint8 S x S x 3, depth float32 S x S in metres (0 = missing unless filled;
    None when ``need_depth`` is False) and the mask bool S x S: all False for a normal image
    without a mask file, None for an anomalous image without one. ``depth_transform`` (an
    augmentation) maps the raw depth, H x W metres, before the preprocessing.
    """
    rgb = load_rgb(sample.rgb_path)
    depth = None
    if need_depth:
        if sample.depth_path is None:
            raise AnodetError(f"RGB image {sample.rgb_path} has no depth file")
        depth = _load_depth_named(sample.depth_path)
        if depth.shape != rgb.shape[:2]:
            raise AnodetError(
                f"depth {sample.depth_path} is {depth.shape[1]}x{depth.shape[0]} but RGB "
                f"{sample.rgb_path} is {rgb.shape[1]}x{rgb.shape[0]}; they must be aligned"
            )
        if depth_transform is not None:
            depth = depth_transform(depth)
    mask = _read_mask(sample, rgb.shape[:2])
    rgb_s, depth_s = prepare_frame(rgb, depth, spec)
    return rgb_s, depth_s, None if mask is None else resize_mask(mask, spec.image_size)


def _load_depth_named(path: Path) -> np.ndarray:
    """Depth with NaN/inf or impossibly far pixels marked missing, naming the file in a warning.

    Left unmarked, one 3e38 patch in one training image makes every loss and the threshold NaN.
    """
    try:
        return load_depth(path, strict=True)
    except AnodetError as exc:
        depth = load_depth(path)  # raises again for a file that is unreadable or has no valid pixel
        log.warning("%s; those pixels are treated as missing depth", exc)
        return depth


def load_gt(sample: Sample) -> np.ndarray | None:
    """Ground truth as bool H x W at its file's resolution (the RGB image's when synthesised).

    All False for a normal image without a mask; None for an anomalous one without a mask.
    """
    if sample.mask_path is not None:
        return _read_mask(sample, None)
    if sample.label == 1:
        return None
    # Only the image size is needed, but OpenCV has no header-only reader.
    return np.zeros(load_rgb(sample.rgb_path).shape[:2], dtype=bool)


def _read_mask(sample: Sample, shape: tuple[int, int] | None) -> np.ndarray | None:
    if sample.mask_path is None:
        return None if sample.label == 1 else np.zeros(shape, dtype=bool)
    mask = load_mask(sample.mask_path)
    if shape is not None and mask.shape != shape:
        raise AnodetError(
            f"mask {sample.mask_path} is {mask.shape[1]}x{mask.shape[0]} but RGB "
            f"{sample.rgb_path} is {shape[1]}x{shape[0]}"
        )
    return mask
