"""Deprecated alias of :mod:`anodet.serve.triton_server`, kept for one release (see CHANGELOG.md)."""

import warnings

from anodet.serve.triton_server import (  # noqa: F401 - re-exported
    Bundle,
    TritonServer,
    find_bundle,
    free_port,
)

warnings.warn("anodet.runtime.triton_server is deprecated: import anodet.serve.triton_server instead",
              DeprecationWarning, stacklevel=2)
