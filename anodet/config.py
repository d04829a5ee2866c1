"""Experiment configuration: frozen dataclasses, the named presets, YAML load/save.

A YAML file is either a full resolved config (as written to ``EXPDIR/config.yaml``) or a
custom preset: ``preset: rgbd_full`` plus the sections and keys to override. Unknown keys
are rejected with the list of valid ones, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from anodet.calibration import ERROR_NORMS, THRESHOLD_METHODS
from anodet.config_fields import check_aligner_fit, check_ranges, typed_section  # noqa: F401 (re-exported)
from anodet.errors import AnodetError
from anodet.preprocess import PreprocessSpec

LAYERS = ("layer1", "layer2", "layer3", "layer4")
BACKBONES = ("resnet50", "resnet18", "wide_resnet50_2",
             "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
FUSIONS = ("early", "late")  # RGB-D: 4-channel stem | separate RGB and depth passes
REDUCTIONS = ("pca", "orthogonal", "group")
SCORE_FUSIONS = ("joint", "max", "sum")  # as anodet.models.scoring (config stays torch-free)


@dataclass(frozen=True)
class DataConfig:
    """How a frame becomes model input. Shared verbatim by training and the runtime."""

    image_size: int = 256  # square model input, pixels
    fill_holes: bool = True  # fill missing depth from the nearest valid pixel
    remove_plane: bool = False  # fit a plane on the border and flatten tilt
    depth_sigma: float = 0.0  # Gaussian low-pass of depth before the backbone (model px); 0 = off
    depth_relief_sigma: float = 0.0  # feed the local relief: depth minus a Gaussian fit of this sigma (model px)
    depth_relief_step: float = 0.0  # metres: make that fit robust to machined steps taller than this; 0 = plain
    val_fraction: float = 0.2  # share of train split held out when no validation split exists

    @property
    def preprocess(self) -> PreprocessSpec:
        """The part of this config applied to frames before the graph (training and runtime)."""
        return PreprocessSpec(image_size=self.image_size, fill_holes=self.fill_holes,
                              remove_plane=self.remove_plane, depth_sigma=self.depth_sigma,
                              depth_relief_sigma=self.depth_relief_sigma, depth_relief_step=self.depth_relief_step)


@dataclass(frozen=True)
class ModelConfig:
    """The detector: backbone, fixed aligner, autoencoder, scoring."""

    backbone: str = "resnet50"
    in_channels: int = 4  # 4 = RGB + depth, 3 = RGB only
    fusion: str = "early"  # RGB-D only: early (4-channel stem) | late (RGB and depth passes, see backbone.py)
    depth_stride: int = 1  # late fusion: the depth pass runs at 1/depth_stride of the input size (1, 2 or 4)
    layers: tuple[str, ...] = LAYERS
    feature_size: int = 64  # side of the aligned feature map
    reduce_channels: int | None = 64  # channels kept per layer (None: use reduction_factor)
    reduction_factor: int = 1  # channels // factor per layer when reduce_channels is None
    reduction: str = "pca"  # fixed 1x1 projection: pca | orthogonal | group
    reduce_first: bool = True  # reduce at native resolution, then upsample (same result, cheaper)
    smooth_kernel: int = 3  # mean filter on the aligned map (reflection padded); 1 = off
    latent_dim: int = 128  # autoencoder bottleneck d (DFR: C -> (C+2d)/2 -> 2d -> d)
    blur_sigma: float = 4.0  # Gaussian blur of the full-size map before the max, pixels
    score_fusion: str = "joint"  # late fusion: joint (one error over all channels) | max | sum of
    # per-modality error maps, each standardised on normal images (anodet.models.scoring)
    mask_peak_share: float = 0.5  # mask: above the pixel threshold and this share of the way to the
    # frame's peak (0 = the pixel threshold alone). The map is a blurred copy of the defect, so a
    # half-maximum contour follows its extent (benchmarks/pixel_threshold.py).
    bn_recalibration: int = 0  # random-init backbones only: training images used to recompute
    # the (frozen) BatchNorm running statistics once before fitting; 0 = keep mean 0 / var 1.
    # Off by default: it lowered accuracy in the defaults sweep (gain10_std_bnrecal in
    # benchmarks/results/tune_defaults.md) and tiny activations deep in the net hit denormals.
    depth_gain: float = 10.0  # depth channel = centred depth / (training depth std / depth_gain)
    # The aligner keeps each stage's highest-variance directions, so depth and colour compete for
    # them: the gain trades geometry against colour defects. Chosen by
    # `benchmarks/tune_defaults.py --suite defaults` (benchmarks/results/tune_defaults.md).


@dataclass(frozen=True)
class TrainConfig:
    """Autoencoder fit on cached features (backbone and aligner never train)."""

    epochs: int = 200
    batch_size: int = 4096  # pixel feature vectors per step (a 1x1-conv AE is a per-pixel MLP)
    pixels_per_image: int = 512  # pixel vectors sampled per training image per epoch
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 15  # epochs without validation improvement before stopping
    grad_clip: float = 1.0
    seed: int = 0
    error_norm: str = "std"  # per-position error statistics from the training normals: none | std | zscore
    threshold_method: str = "image_quantile"
    threshold_quantile: float = 0.99
    pixel_fpr: float = 0.003  # mask threshold: share of validation-normal pixels allowed above it
    # Also fit and calibrate on every image with its depth re-rounded to each z16 step (metres):
    # a model trained on continuous depth then takes a D4xx's 1 mm steps as normal.
    depth_augment_units: tuple[float, ...] = ()


@dataclass(frozen=True)
class ExperimentConfig:
    preset: str = "rgbd_full"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["model"]["layers"] = list(self.model.layers)
        out["train"]["depth_augment_units"] = list(self.train.depth_augment_units)
        return out


# Late fusion with a half-resolution depth pass, layer1-layer3, 16 channels per stage and modality:
# chosen against early fusion and wider/deeper variants by benchmarks/tune_defaults.py
# (benchmarks/README.md, "EfficientNet-Lite"); depth_gain 0.5 from its one-factor sweep
# (suite lite_item5): a softer depth rendering keeps more geometry and fewer false alarms.
# rgb_lite keeps this model; rgbd_lite moved on to RGBD_LITE_MODEL below.
LITE_MODEL = ModelConfig(backbone="efficientnet_lite0", fusion="late", depth_stride=2,
                         layers=("layer1", "layer2", "layer3"), feature_size=32, reduce_channels=16,
                         latent_dim=64, depth_gain=0.5, blur_sigma=4.0)
LITE_TRAIN = TrainConfig(epochs=60)  # what the measurements used
# The hard suite (issue 22; benchmarks/README.md, "Hard suite"): shallow dents need the depth pass
# at full resolution on the edge-aware local relief, thin scratches need 64 x 64 features with 32
# channels per stage, and per-modality max fusion keeps depth noise off the colour map.
RGBD_LITE_MODEL = dataclasses.replace(LITE_MODEL, depth_stride=1, feature_size=64, reduce_channels=32,
                                      score_fusion="max")
RGBD_LITE_DATA = DataConfig(depth_sigma=2.0, depth_relief_sigma=16.0, depth_relief_step=0.0015)

PRESETS: dict[str, ExperimentConfig] = {
    "rgbd_full": ExperimentConfig(preset="rgbd_full"),
    "rgb_baseline": ExperimentConfig(preset="rgb_baseline", model=ModelConfig(in_channels=3)),
    "rgbd_reduced": ExperimentConfig(
        preset="rgbd_reduced", model=ModelConfig(layers=("layer2", "layer3"))
    ),
    # EfficientNet-Lite0 with real ImageNet weights (anodet[lite]); its widths and feature size
    # are rebalanced so the backbone stays the largest stage (benchmarks/README.md, "Lite").
    # Depth also re-rounded to 1 mm steps (a D4xx's default unit): trained on continuous depth,
    # it still passes good parts from a z16 camera (benchmarks/README.md, "Real-sensor depth").
    "rgbd_lite": ExperimentConfig(preset="rgbd_lite", data=RGBD_LITE_DATA, model=RGBD_LITE_MODEL,
                                  train=dataclasses.replace(LITE_TRAIN, depth_augment_units=(0.001,))),
    "rgb_lite": ExperimentConfig(preset="rgb_lite", model=dataclasses.replace(LITE_MODEL, in_channels=3),
                                 train=LITE_TRAIN),
}

# What anodet-train and a YAML without ``preset:`` start from: the preset with real ImageNet
# features that install offline (the ResNets' weights cannot be downloaded everywhere).
DEFAULT_PRESET = "rgbd_lite"

# Presets kept for research and comparison, not for a line: their ResNets have no ImageNet weights
# that install offline, and they were never given camera-depth robustness (trained on float depth,
# rgbd_full flagged every good part of a z16 recording). anodet-train warns when it trains one.
RESEARCH_BACKBONES = ("resnet50", "resnet18", "wide_resnet50_2")


def research_note(cfg: ExperimentConfig) -> str | None:
    """A one-line warning when ``cfg`` is a research configuration (a ResNet backbone), else None."""
    if cfg.model.backbone not in RESEARCH_BACKBONES:
        return None
    return (f"{cfg.preset} ({cfg.model.backbone}) is a research preset: not validated on camera depth "
            f"(z16 steps, noise, holes) and without offline ImageNet weights; for a line use {DEFAULT_PRESET}")


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


def _check_keys(name: str, given: dict, allowed: list[str]) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise AnodetError(
            f"unknown key(s) {', '.join(unknown)} in {name}; valid keys: {', '.join(allowed)}"
        )


def validate(cfg: ExperimentConfig) -> ExperimentConfig:
    """Check value ranges and choices; return ``cfg`` unchanged when valid."""
    m, d, t = cfg.model, cfg.data, cfg.train
    if m.backbone not in BACKBONES:
        raise AnodetError(f"unknown backbone {m.backbone!r}; valid: {', '.join(BACKBONES)}")
    if m.fusion not in FUSIONS:
        raise AnodetError(f"unknown fusion {m.fusion!r}; valid: {', '.join(FUSIONS)}")
    if m.depth_stride not in (1, 2, 4):
        raise AnodetError(f"model.depth_stride must be 1, 2 or 4, got {m.depth_stride}")
    if m.in_channels not in (3, 4):
        raise AnodetError(f"model.in_channels must be 3 (RGB) or 4 (RGB-D), got {m.in_channels}")
    if not m.layers or any(layer not in LAYERS for layer in m.layers):
        raise AnodetError(f"model.layers must be a subset of {', '.join(LAYERS)}, got {m.layers}")
    if list(m.layers) != sorted(m.layers):
        raise AnodetError(f"model.layers must be in network order, got {m.layers}")
    if m.score_fusion not in SCORE_FUSIONS:
        raise AnodetError(f"unknown score_fusion {m.score_fusion!r}; valid: {', '.join(SCORE_FUSIONS)}")
    if m.score_fusion != "joint" and not (m.in_channels == 4 and m.fusion == "late"):
        raise AnodetError(f"model.score_fusion {m.score_fusion!r} needs separate modality passes "
                          "(in_channels 4 and fusion late); use joint")
    if m.reduction not in REDUCTIONS:
        raise AnodetError(f"unknown reduction {m.reduction!r}; valid: {', '.join(REDUCTIONS)}")
    if t.threshold_method not in THRESHOLD_METHODS:
        raise AnodetError(
            f"unknown threshold_method {t.threshold_method!r}; valid: {', '.join(THRESHOLD_METHODS)}"
        )
    if t.error_norm not in ERROR_NORMS:
        raise AnodetError(f"unknown error_norm {t.error_norm!r}; valid: {', '.join(ERROR_NORMS)}")
    if d.image_size < 32 or d.image_size % 32:
        raise AnodetError(f"data.image_size must be a multiple of 32 and >= 32, got {d.image_size}")
    if not d.depth_sigma >= 0:
        raise AnodetError(f"data.depth_sigma must be >= 0 (0 = no smoothing), got {d.depth_sigma}")
    if not d.depth_relief_step >= 0:
        raise AnodetError(f"data.depth_relief_step must be >= 0 metres (0 = plain fit), got {d.depth_relief_step}")
    if not d.depth_relief_sigma >= 0:
        raise AnodetError(f"data.depth_relief_sigma must be >= 0 (0 = raw depth), got {d.depth_relief_sigma}")
    if m.feature_size < 2 or m.latent_dim < 1 or m.smooth_kernel < 1:
        raise AnodetError("model.feature_size >= 2, latent_dim >= 1 and smooth_kernel >= 1 required")
    if m.bn_recalibration < 0 or m.depth_gain <= 0:
        raise AnodetError("model.bn_recalibration >= 0 and model.depth_gain > 0 required")
    if m.reduce_channels is not None and m.reduce_channels < 1:
        raise AnodetError("model.reduce_channels must be positive (or null to use reduction_factor)")
    if not 0.0 < t.threshold_quantile <= 1.0:
        raise AnodetError(f"train.threshold_quantile must be in (0, 1], got {t.threshold_quantile}")
    if not 0.0 <= m.mask_peak_share < 1.0:
        raise AnodetError(f"model.mask_peak_share must be in [0, 1), got {m.mask_peak_share}")
    if not 0.0 < t.pixel_fpr < 1.0:
        raise AnodetError(f"train.pixel_fpr must be in (0, 1), got {t.pixel_fpr}")
    if any(not 0.0 < u <= 0.01 for u in t.depth_augment_units):
        raise AnodetError(f"train.depth_augment_units are z16 steps in metres in (0, 0.01], got "
                          f"{list(t.depth_augment_units)}")
    if t.epochs < 1 or t.batch_size < 2 or t.lr <= 0:
        raise AnodetError("train.epochs >= 1, train.batch_size >= 2 and train.lr > 0 required")
    check_ranges(cfg)
    return cfg


def from_dict(raw: dict[str, Any], source: str = "config") -> ExperimentConfig:
    """Build a config from a (possibly partial) dict; missing keys come from the base preset."""
    if not isinstance(raw, dict):
        raise AnodetError(f"{source}: expected a mapping at the top level")
    _check_keys(source, raw, ["preset", *_SECTIONS])
    base_name = raw.get("preset", DEFAULT_PRESET)
    base = PRESETS.get(base_name) if isinstance(base_name, str) else None
    if base is None:
        # A resolved custom config names itself; its sections must then be complete, else a
        # typo such as "rgbd_reducd" would silently fall back to the defaults.
        complete = all(isinstance(raw.get(n), dict) and {f.name for f in dataclasses.fields(c)} <= set(raw[n])
                       for n, c in _SECTIONS.items())
        if not complete:
            raise AnodetError(f"{source}: unknown preset {base_name!r}; valid presets: {', '.join(PRESETS)} "
                              "(a custom preset name needs every key of every section, as in a saved config.yaml)")
        base = ExperimentConfig(preset=base_name)
    sections = {}
    for name, cls in _SECTIONS.items():
        given = raw.get(name) or {}
        if not isinstance(given, dict):
            raise AnodetError(f"{source}: section {name!r} must be a mapping")
        _check_keys(f"{source} section {name!r}", given, [f.name for f in dataclasses.fields(cls)])
        given = typed_section(cls, given, f"{source}: {name}")
        try:
            sections[name] = dataclasses.replace(getattr(base, name), **given)
        except TypeError as exc:
            raise AnodetError(f"{source} section {name!r}: {exc}") from None
    return validate(ExperimentConfig(preset=base_name, **sections))


def load(preset_or_path: str | Path) -> ExperimentConfig:
    """Resolve ``--config``: a preset name or a YAML file."""
    name = str(preset_or_path)
    if name in PRESETS:
        return PRESETS[name]
    path = Path(name)
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise AnodetError(
            f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)} (or a .yaml file)"
        )
    if not path.is_file():
        raise AnodetError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise AnodetError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    return from_dict(raw or {}, source=str(path))


def save(cfg: ExperimentConfig, path: Path) -> None:
    """Write the resolved config as YAML (loadable by :func:`load`)."""
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def with_overrides(cfg: ExperimentConfig, section: str, **values: Any) -> ExperimentConfig:
    """Return ``cfg`` with keys of one section replaced (``None`` values are ignored)."""
    values = {k: v for k, v in values.items() if v is not None}
    if not values:
        return cfg
    new_section = dataclasses.replace(getattr(cfg, section), **values)
    return validate(dataclasses.replace(cfg, **{section: new_section}))
