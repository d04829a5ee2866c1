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
