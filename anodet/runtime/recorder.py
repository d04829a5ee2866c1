"""Deprecated alias of :mod:`anodet.runtime.sources.recorder`, kept for one release (see CHANGELOG.md)."""

import warnings

from anodet.runtime.sources.recorder import (  # noqa: F401 - re-exported
    write_recording,
)

warnings.warn("anodet.runtime.recorder is deprecated: import anodet.runtime.sources.recorder instead",
              DeprecationWarning, stacklevel=2)
