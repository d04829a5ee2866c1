"""Deprecated alias of :mod:`anodet.runtime.backends.openvino`, kept for one release (see CHANGELOG.md)."""

import warnings

from anodet.runtime.backends.openvino import (  # noqa: F401 - re-exported
    OPENVINO_HINT,
    OpenVinoBackend,
    check_device,
    model_metadata,
    read_model,
)

warnings.warn("anodet.runtime.openvino_backend is deprecated: import anodet.runtime.backends.openvino instead",
              DeprecationWarning, stacklevel=2)
