"""Type checks for config values read from YAML, driven by the dataclasses' declared types.

PyYAML reads ``lr: 1e-3`` as the *string* "1e-3" (YAML 1.1 floats need a dot), ``epochs: ten``
as a string and ``epochs: 2.5`` as a float. Each value is coerced to its field's declared type
where that is unambiguous (a numeric string for a number, an integral float for an int) and
refused otherwise, with one line naming the key, the expected type and the value given.
Ranges are checked afterwards by ``anodet.config.validate``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from anodet.errors import AnodetError

_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


class _Mismatch(Exception):
    """The value does not fit the type (turned into one AnodetError line by ``typed_section``)."""


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise _Mismatch
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise _Mismatch from None
        return _to_int(number)
    raise _Mismatch


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise _Mismatch
    if isinstance(value, (int, float)):
        out = float(value)
    elif isinstance(value, str):
        try:
            out = float(value)  # "1e-3": the value PyYAML leaves as a string
        except ValueError:
            raise _Mismatch from None
    else:
        raise _Mismatch
    if not math.isfinite(out):
        raise _Mismatch
    return out


def _exact(kind: type):
    def check(value: Any) -> Any:
        if type(value) is not kind:
            raise _Mismatch
        return value

    return check


_CONVERTERS = {int: _to_int, float: _to_float, bool: _exact(bool), str: _exact(str)}


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as type ``hint`` (int, float, bool, str, X | None, tuple[X, ...]) or _Mismatch."""
    if hint in _CONVERTERS:
        return _CONVERTERS[hint](value)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _coerce(value, inner[0])
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        return tuple(_coerce(v, args[0]) for v in value)
    return value  # a type this module does not know: validate() has the last word


def _describe(hint: Any) -> str:
    if hint in _NAMES:
        return _NAMES[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    if origin is tuple:
        return f"a list of {_describe(args[0]).removeprefix('an ').removeprefix('a ')}s"
    return str(hint)


def typed_section(cls: type, given: dict[str, Any], where: str) -> dict[str, Any]:
    """``given`` (YAML keys of one section) with each value coerced to ``cls``'s field type.

    where: the prefix naming the section in messages, e.g. "tiny.yaml: train".
    """
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if f.name not in given:
            continue
        value = given[f.name]
        try:
            out[f.name] = _coerce(value, hints[f.name])
        except _Mismatch:
            raise AnodetError(
                f"{where}.{f.name} must be {_describe(hints[f.name])}, got {value!r}"
            ) from None
    return {**given, **out}


# (section, key, lowest, lowest allowed?, highest or None) for ranges validate() leaves out.
RANGES = (
    ("data", "val_fraction", 0.0, True, 1.0),
    ("model", "reduction_factor", 1, True, None),
    ("model", "blur_sigma", 0.0, True, None),
    ("train", "weight_decay", 0.0, True, None),
    ("train", "patience", 1, True, None),
    ("train", "grad_clip", 0.0, False, None),
    ("train", "pixels_per_image", 1, True, None),
    ("train", "seed", 0, True, None),
)


def check_ranges(cfg: Any) -> None:
    """AnodetError naming the first value of ``cfg`` (an ExperimentConfig) outside RANGES."""
    for section, key, low, inclusive, high in RANGES:
        value = getattr(getattr(cfg, section), key)
        ok = (value >= low if inclusive else value > low) and (high is None or value < high)
        if not ok:
            lo = f">= {low}" if inclusive else f"> {low}"
            want = lo if high is None else f"in [{low}, {high})"
            raise AnodetError(f"{section}.{key} must be {want}, got {value}")


MIN_VECTORS_PER_CHANNEL = 2  # measured in benchmarks/results/image_size_sweep.json (README "input size")


def check_aligner_fit(cfg: Any, strides: list[int], kept: list[int], n_images: int) -> None:
    """Refuse a PCA aligner that cannot be fitted: too few pixel vectors for the channels kept.

    A stage of stride s gives n_images x (image_size / s)^2 vectors. The centred covariance of
    n vectors has rank n - 1 at most, so with n <= k some of the k kept directions have zero
    variance and the whitening divides by ~0: training pixels reconstruct, unseen images blow up
    (the degenerate model of issue 15). strides, kept: per aligned stage, in order.
    """
    if cfg.model.reduction != "pca":
        return
    for layer, stride, k in zip(cfg.model.layers * (len(kept) // len(cfg.model.layers)), strides, kept):
        side = cfg.data.image_size // stride
        vectors = n_images * side * side
        if vectors < MIN_VECTORS_PER_CHANNEL * k:
            raise AnodetError(
                f"data.image_size {cfg.data.image_size} is too small for {n_images} training images: {layer} is "
                f"{side}x{side}, so the PCA aligner would fit {k} channels on {vectors} pixel vectors (needs >= "
                f"{MIN_VECTORS_PER_CHANNEL * k}) and whiten directions of zero variance; use a larger image_size, "
                "more training images, fewer model.reduce_channels or fewer model.layers")
