"""Deprecated alias of :mod:`anodet.runtime.sources.realsense`, kept for one release (see CHANGELOG.md)."""

import warnings

from anodet.runtime.sources.realsense import (  # noqa: F401 - re-exported
    FILTERS,
    RealSenseSource,
    RecordingSource,
    import_realsense,
    make_filters,
)

warnings.warn("anodet.runtime.realsense is deprecated: import anodet.runtime.sources.realsense instead",
              DeprecationWarning, stacklevel=2)
