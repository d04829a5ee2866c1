"""Deprecated alias of :mod:`anodet.runtime.backends.triton`, kept for one release (see CHANGELOG.md)."""

import warnings

from anodet.runtime.backends.triton import (  # noqa: F401 - re-exported
    TRITON_HINT,
    TritonBackend,
)

warnings.warn("anodet.runtime.triton_backend is deprecated: import anodet.runtime.backends.triton instead",
              DeprecationWarning, stacklevel=2)
