"""Deprecated alias of :mod:`anodet.serve.triton_model`, kept for one release (see CHANGELOG.md)."""

import warnings

from anodet.serve.triton_model import (  # noqa: F401 - re-exported
    CAMERA_FRAMES,
    FRAMES_PARAM,
    OUTPUT_ERROR,
    PREPARED_PARAM,
    THREADS_PARAM,
    TritonPythonModel,
    prepare_request,
    serve_batches,
)

warnings.warn("anodet.runtime.triton_model is deprecated: import anodet.serve.triton_model instead",
              DeprecationWarning, stacklevel=2)
