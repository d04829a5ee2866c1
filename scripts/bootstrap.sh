#!/usr/bin/env bash
# Bring a fresh machine to a working anodet environment: Debian packages, a virtualenv and the
# pip extras. Idempotent: each step is skipped when already done. Usage: bootstrap.sh EXTRAS
set -euo pipefail
extras="${1:-train,onnx,camera,triton,dev}"
venv="${VENV:-.venv}"
python="${PYTHON:-python3}"

# pyrealsense2 needs libusb at import time; OpenCV headless needs libGL-free libs only.
need_apt=()
for pkg in libusb-1.0-0; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${need_apt[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "bootstrap: creating virtualenv $venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
fi

stamp="$venv/.anodet-$(cat setup.cfg pyproject.toml | sha1sum | cut -c1-12)-${extras//,/_}"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing anodet[$extras] (first run downloads/installs PyTorch; a few minutes)"
  "$venv/bin/pip" install -q -e ".[$extras]"
  touch "$stamp"
fi

# The Triton server for tests/serve/test_triton_server.py: the tritonserver binary bundled in the
# nvidia-pytriton wheel, unpacked aside (pip-installing the wheel would pin numpy below 2).
# anodet.serve.triton_server finds it in build/triton/server.
pytriton_version=0.7.0
server_dir=build/triton/server
if [[ ",$extras," == *",triton,"* && ",$extras," == *",dev,"* && ! -f "$server_dir/.nvidia-pytriton-$pytriton_version" ]]; then
  echo "bootstrap: unpacking the tritonserver of nvidia-pytriton $pytriton_version into $server_dir"
  mkdir -p build/triton
  "$venv/bin/pip" download -q --no-deps "nvidia-pytriton==$pytriton_version" -d build/triton
  "$venv/bin/python" - "$server_dir" build/triton/nvidia_pytriton-"$pytriton_version"-*.whl <<'PY'
import os, stat, sys, zipfile
target, wheel = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as whl:
    for info in whl.infolist():
        if info.filename.startswith(("pytriton/tritonserver/", "nvidia_pytriton.libs/")):
            path = whl.extract(info, target)
            if (info.external_attr >> 16) & stat.S_IXUSR:  # zipfile drops the executable bits
                os.chmod(path, 0o755)
PY
  touch "$server_dir/.nvidia-pytriton-$pytriton_version"
fi
