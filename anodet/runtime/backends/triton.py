"""Triton backend (row triton): a model on a Triton server; the edge box streams, the server infers.

    backend = TritonBackend("gpu-server:8001", "anodet")
    run(backend, "realsense", events="events.jsonl")

gRPC through ``tritonclient`` (``pip install 'anodet[triton]'``; torch-free). The model's
contract is read from the server's model config (the ``anodet`` parameter written by
``anodet-export triton``) and checked with :mod:`anodet.artifact`'s functions, so events,
decisions and sinks are those of a local backend. Frames are preprocessed here, as for a local
model; the python flavour is told so per request and skips its own preprocessing. The names
that client, server (anodet.serve.triton_model) and repository writer (anodet.export.triton)
share are defined here: the client is the lowest of the three.

Failures: a server that is not up (or goes away) is retried with exponential backoff for
``retry_for`` seconds, then an AnodetError; a request slower than ``timeout`` seconds is an
AnodetError; an unknown model name lists the server's models; a model whose config lacks the
anodet metadata is refused. A frame whose output the server found unusable is an OutputError,
which the pipeline counts as failed (as for a local model).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from anodet.artifact import (
    INPUT_DEPTH,
    INPUT_RGB,
    OUTPUTS,
    ModelInfo,
    OutputError,
    check_outputs,
    info_from_metadata,
    run_batched,
)
from anodet.errors import AnodetError
from anodet.runtime.backends.table import install_hint

logger = logging.getLogger(__name__)
T = TypeVar("T")
TRITON_HINT = install_hint("triton")

# Config parameter of the python flavour: its inputs take camera-resolution frames and it
# preprocesses them; a request with the parameter PREPARED_PARAM=true holds graph input instead.
FRAMES_PARAM, CAMERA_FRAMES = "anodet_frames", "camera"
PREPARED_PARAM = "anodet_prepared"
THREADS_PARAM = "onnx_threads"  # ONNX Runtime intra-op threads per instance
OUTPUT_ERROR = "anodet output error: "  # prefix of an error response for an unusable output
_DTYPES = {INPUT_RGB: "UINT8", INPUT_DEPTH: "FP32"}


class TritonBackend:
    """A model served by Triton over gRPC; ``predict`` as in :class:`anodet.runtime.Backend`.

    url: HOST:PORT of the server's gRPC endpoint; timeout: seconds per request; retry_for:
    seconds to keep retrying an unavailable server (at start and mid-stream), waiting
    first_delay, then doubling up to max_delay between attempts.
    """

    def __init__(self, url: str, model_name: str = "anodet", *, timeout: float = 10.0,
                 retry_for: float = 30.0, first_delay: float = 0.25, max_delay: float = 4.0):
        try:
            import tritonclient.grpc as grpcclient
            from tritonclient.utils import InferenceServerException
        except ImportError:
            raise AnodetError(f"backend 'triton' needs tritonclient: {TRITON_HINT}") from None
        if timeout <= 0 or retry_for < 0:
            raise AnodetError(f"timeout must be > 0 and retry_for >= 0, got {timeout} and {retry_for}")
        self.url, self.model_name, self.timeout, self.retry_for = url, model_name, timeout, retry_for
        self.first_delay, self.max_delay = first_delay, max_delay
        self.reconnects = 0
        self._grpc, self._error = grpcclient, InferenceServerException
        try:
            # gRPC's own reconnect backoff (up to 120 s by default) would outlast our retries
            backoff = int(max_delay * 1000)
            self.client = grpcclient.InferenceServerClient(url, channel_args=[
                ("grpc.max_send_message_length", 2**31 - 1), ("grpc.max_receive_message_length", 2**31 - 1),
                ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", backoff)])
        except Exception as exc:  # noqa: BLE001 - grpc raises ValueError & co for a bad address
            raise AnodetError(f"cannot use Triton address {url!r} (expected HOST:PORT): {exc}") from None
        config = self._call(self._model_config, "reading the model config")
        params = {key: value.string_value for key, value in config.parameters.items()}
        source = f"Triton model '{model_name}' at {url}"
        self.info: ModelInfo = info_from_metadata(params, source)
        inputs, outputs = {t.name for t in config.input}, {t.name for t in config.output}
        if inputs != set(self.info.input_names) or not set(OUTPUTS) <= outputs:
            raise AnodetError(
                f"{source}: inputs {sorted(inputs)} / outputs {sorted(outputs)} do not match its "
                f"anodet metadata (expected inputs {list(self.info.input_names)}, outputs {list(OUTPUTS)})"
            )
        self.max_batch = config.max_batch_size or None
        self.camera_frames = params.get(FRAMES_PARAM) == CAMERA_FRAMES
        self.name = f"triton:{model_name}"
        logger.info("serving through %s at %s (max batch %s)", model_name, url, self.max_batch or "fixed")

    def _model_config(self) -> Any:
        try:
            return self.client.get_model_config(self.model_name, client_timeout=self.timeout).config
        except self._error as exc:
            if _status(exc) in ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED"):
                raise
            raise AnodetError(
                f"Triton server at {self.url} has no model '{self.model_name}' ready "
                f"({_message(exc)}); models there: {self._model_names()}"
            ) from None

    def _model_names(self) -> str:
        try:
            index = self.client.get_model_repository_index(client_timeout=self.timeout).models
        except self._error:
            return "unknown (the repository index could not be read)"
        return ", ".join(f"{m.name} ({m.state or 'not loaded'})" for m in index) or "none"

    def _call(self, fn: Callable[[], T], what: str) -> T:
        """``fn()``, retried with backoff while the server is unavailable; AnodetError after that."""
        start, delay, attempt = time.monotonic(), self.first_delay, 0
        while True:
            attempt += 1
            try:
                result = fn()
            except self._error as exc:
                status = _status(exc)
                if status == "StatusCode.DEADLINE_EXCEEDED":
                    raise AnodetError(
                        f"Triton server at {self.url}: {what} for '{self.model_name}' timed out after "
                        f"{self.timeout:g} s (raise --timeout, or check the server's load)"
                    ) from None
                if status != "StatusCode.UNAVAILABLE":
                    text = _message(exc)
                    if OUTPUT_ERROR in text:
                        raise OutputError(text.split(OUTPUT_ERROR, 1)[1]) from None
                    raise AnodetError(f"Triton server at {self.url}: {what} failed: {text}") from None
                elapsed = time.monotonic() - start
                if elapsed >= self.retry_for:
                    raise AnodetError(
                        f"Triton server at {self.url} is not reachable ({what}; {attempt} attempts "
                        f"over {elapsed:.1f} s): is it running? last error: {_message(exc)}"
                    ) from None
                logger.warning("Triton server at %s unavailable (%s); retrying in %.2f s",
                               self.url, what, delay)
                time.sleep(min(delay, max(0.0, self.retry_for - elapsed)))
                delay = min(delay * 2, self.max_delay)
                continue
            if attempt > 1:
                self.reconnects += 1
                logger.warning("Triton server at %s answered again after %d attempts", self.url, attempt)
            return result

    def _infer(self, rgb: np.ndarray, depth: np.ndarray | None, prepared: bool = True) -> dict[str, np.ndarray]:
        feeds = {INPUT_RGB: rgb} if depth is None else {INPUT_RGB: rgb, INPUT_DEPTH: depth}
        inputs = []
        for name, array in feeds.items():
            tensor = self._grpc.InferInput(name, list(array.shape), _DTYPES[name])
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        outputs = [self._grpc.InferRequestedOutput(name) for name in OUTPUTS]
        params = {PREPARED_PARAM: True} if self.camera_frames and prepared else None
        result = self._call(lambda: self.client.infer(
            self.model_name, inputs, outputs=outputs, client_timeout=self.timeout, parameters=params
        ), "inference")
        return {name: result.as_numpy(name) for name in OUTPUTS}

    def predict(self, rgb: np.ndarray, depth: np.ndarray | None) -> dict[str, np.ndarray]:
        """rgb uint8 N x S x S x 3, depth float32 N x S x S metres (None if RGB-only)."""
        return run_batched(self._infer, self.info, rgb, depth, max_batch=self.max_batch)

    def predict_camera(self, rgb: np.ndarray, depth: np.ndarray | None) -> dict[str, np.ndarray]:
        """Camera-resolution frames, preprocessed by the server (python flavour only).

        rgb uint8 N x H x W x 3, depth float32 N x H x W metres (None if RGB-only); one request
        per chunk of at most the server's max batch.
        """
        if not self.camera_frames:
            raise AnodetError(f"Triton model '{self.model_name}' takes graph input only; export it "
                              "with --flavour python to send camera frames")
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        depth = None if depth is None or not self.info.needs_depth else np.ascontiguousarray(depth, np.float32)
        step, parts = self.max_batch or rgb.shape[0], []
        for i in range(0, rgb.shape[0], step):
            d = None if depth is None else depth[i:i + step]
            out = self._infer(rgb[i:i + step], d, prepared=False)
            parts.append(check_outputs(out, min(step, rgb.shape[0] - i), self.info.image_size))
        return {k: np.concatenate([p[k] for p in parts]) for k in OUTPUTS}

    def close(self) -> None:
        try:
            self.client.close()
        except Exception as exc:  # noqa: BLE001 - closing a channel to a dead server may fail
            logger.debug("closing the Triton client failed: %s", exc)


def _status(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    return str(status() if callable(status) else status)


def _message(exc: Exception) -> str:
    message = getattr(exc, "message", None)
    text = message() if callable(message) else str(exc)
    return " ".join(str(text).split())[:300]


def open_server(url: str, model_name: str, **options: float) -> TritonBackend:
    """The table's entry point for this remote backend (options: timeout, retry_for, ...)."""
    return TritonBackend(url, model_name, **options)
