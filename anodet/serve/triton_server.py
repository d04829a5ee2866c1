"""Start the ``tritonserver`` bundled in the ``nvidia-pytriton`` wheel on loopback ports.

For tests, benchmarks and trying the python flavour on one machine; production servers run
NVIDIA's Triton containers. The bundle has Triton's Python backend only (no onnxruntime or
TensorRT backend) and runs on CPU; its NVML/DCGM warnings without a GPU are harmless.

Where the bundle is looked for (:func:`find_bundle`): ``$ANODET_TRITON_HOME``, then
``build/triton/server`` (``scripts/bootstrap.sh`` unpacks the wheel there, because installing
it pins numpy below 2), then an installed ``pytriton`` package. The Python backend's stub for
this Python version is copied into a private backend directory, and this interpreter's
``bin`` goes first on the server's PATH: the model code runs with that Python, so anodet and
ONNX Runtime come from this environment.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from anodet.errors import AnodetError

logger = logging.getLogger(__name__)
HOME_ENV = "ANODET_TRITON_HOME"
UNPACKED = Path("build/triton/server")
BUNDLE_HINT = ("unpack the nvidia-pytriton wheel (scripts/bootstrap.sh does, into build/triton/server) "
               f"or set {HOME_ENV} to a folder holding pytriton/ and nvidia_pytriton.libs/")


@dataclass(frozen=True)
class Bundle:
    server: Path  # the tritonserver binary
    backends: Path  # its backend directory
    stubs: Path  # python_backend_stubs/<major.minor>/triton_python_backend_stub
    libs: Path  # the wheel's bundled shared libraries (LD_LIBRARY_PATH)


def find_bundle() -> Bundle:
    """The tritonserver bundle; AnodetError with the way to get it when there is none."""
    roots = [Path(os.environ[HOME_ENV])] if os.environ.get(HOME_ENV) else []
    roots.append(UNPACKED.resolve())
    spec = importlib.util.find_spec("pytriton")
    if spec is not None and spec.submodule_search_locations:
        roots.append(Path(next(iter(spec.submodule_search_locations))).parent)
    for root in roots:
        base = root / "pytriton" / "tritonserver"
        if (base / "bin" / "tritonserver").is_file():
            return Bundle(base / "bin" / "tritonserver", base / "backends", base / "python_backend_stubs",
                          root / "nvidia_pytriton.libs")
    raise AnodetError(f"no tritonserver bundle found (looked in {', '.join(map(str, roots))}); {BUNDLE_HINT}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TritonServer:
    """A running tritonserver on 127.0.0.1 serving ``repo``; ``stop()`` (or ``with``) ends it.

    ``grpc_url`` is what :class:`anodet.runtime.backends.triton.TritonBackend` takes; the
    server's output goes to ``log_path``.
    """

    def __init__(self, repo: str | Path, *, ready_timeout: float = 60.0, grpc_port: int | None = None):
        self.bundle = find_bundle()
        self.repo = Path(repo)
        self.work = Path(tempfile.mkdtemp(prefix="anodet-triton-"))
        self.log_path = self.work / "tritonserver.log"
        self.grpc_port = grpc_port or free_port()
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        self.process: subprocess.Popen | None = None
        try:
            self._start(self._backend_dir())
            self.wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise

    def _backend_dir(self) -> Path:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = self.bundle.stubs / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise AnodetError(f"the tritonserver bundle has no Python backend stub for Python {version}")
        python = self.work / "backends" / "python"
        shutil.copytree(self.bundle.backends / "python", python)
        shutil.copy2(stub, python / stub.name)
        for path in (python / stub.name, self.bundle.server):
            if not os.access(path, os.X_OK):  # a wheel unpacked with zipfile loses the x bit
                path.chmod(path.stat().st_mode | 0o755)
        return python.parent

    def _start(self, backends: Path) -> None:
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(self.bundle.libs), env.get("LD_LIBRARY_PATH", "")) if p)
        env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
        cmd = [str(self.bundle.server), f"--model-repository={self.repo.resolve()}",
               f"--backend-directory={backends}", "--grpc-address=127.0.0.1",
               f"--grpc-port={self.grpc_port}", "--http-address=127.0.0.1", f"--http-port={free_port()}",
               "--allow-metrics=false", "--exit-timeout-secs=5", "--strict-readiness=true"]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        logger.info("tritonserver pid %d serving %s on %s", self.process.pid, self.repo, self.grpc_url)

    def wait_ready(self, timeout: float) -> None:
        """Block until the server and all its models are ready; AnodetError with the log's tail."""
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(self.grpc_url)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process is None or self.process.poll() is not None:
                    raise AnodetError(f"tritonserver exited during start-up:\n{self.log_tail()}")
                try:
                    if client.is_server_ready(client_timeout=1.0):
                        return
                except Exception as exc:  # noqa: BLE001 - not listening yet
                    logger.debug("tritonserver not answering yet: %s", exc)
                time.sleep(0.2)
        finally:
            client.close()
        raise AnodetError(f"tritonserver not ready within {timeout:g} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def kill(self) -> None:
        """SIGKILL the server, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s) and remove its work folder."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> TritonServer:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
