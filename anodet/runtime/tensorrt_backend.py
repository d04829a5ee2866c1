"""Deprecated alias of :mod:`anodet.runtime.backends.tensorrt`, kept for one release (see CHANGELOG.md)."""

import warnings

from anodet.runtime.backends.tensorrt import (  # noqa: F401 - re-exported
    TensorRTBackend,
)

warnings.warn("anodet.runtime.tensorrt_backend is deprecated: import anodet.runtime.backends.tensorrt instead",
              DeprecationWarning, stacklevel=2)
