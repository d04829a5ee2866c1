#!/usr/bin/env bash
# Packaging check, run by `make test`: build the wheel, install it NON-editable into two fresh
# virtualenvs and use it there, so a module missing from the wheel fails here, not at a user's.
#   full: anodet[train,onnx]: every console script answers --help, and it trains and exports a
#         tiny model;
#   edge: only anodet[onnx] (torch must be absent): anodet-run streams that export.
# The venvs are kept between runs (deps install once); the wheel is reinstalled every time.
set -euo pipefail
venv="${VENV:-.venv}"
python="${PYTHON:-python3}"
work="${CHECK_DIR:-build/wheel-check}"
mkdir -p "$work"
rm -f "$work"/dist/anodet-*.whl
"$venv/bin/pip" wheel -q --no-deps --no-build-isolation -w "$work/dist" . >"$work/pip.log" 2>&1
wheel=$(ls "$work"/dist/anodet-*.whl)
echo "check_wheel: built $wheel"

install() {  # install VENV EXTRAS: the wheel, non-editable, with its extras' dependencies
  local env="$1" extras="$2"
  [ -x "$env/bin/python" ] || "$python" -m venv "$env"
  # pip's notes about the machine's local package folders go to a log, not the CI output
  "$env/bin/pip" install -q --force-reinstall --no-deps "$wheel" >>"$work/pip.log" 2>&1
  "$env/bin/pip" install -q "${wheel}[${extras}]" >>"$work/pip.log" 2>&1 \
    || { tail -20 "$work/pip.log" >&2; exit 1; }
}

# 1. full install: every console script of the wheel answers --help.
full="$work/venv-full"
install "$full" train,onnx
scripts=$("$full/bin/python" - <<'PY'
from importlib.metadata import distribution
print(" ".join(ep.name for ep in distribution("anodet").entry_points if ep.group == "console_scripts"))
PY
)
for s in $scripts; do
  "$full/bin/$s" --help >/dev/null || { echo "check_wheel: $s --help failed" >&2; exit 1; }
done
echo "check_wheel: full install: --help works for $scripts"

# 2. edge install: torch is not installed at all, and the runtime streams a real export.
edge="$work/venv-edge"
install "$edge" onnx
if "$edge/bin/python" -c "import torch" 2>/dev/null; then
  echo "check_wheel: torch is importable in the edge venv; it must not be" >&2; exit 1
fi
model="$work/model.onnx"
if [ ! -f "$model" ] || [ -n "$(find anodet -name '*.py' -newer "$model")" ]; then  # source changed
  "$full/bin/python" scripts/tiny_export.py "$work/data" "$model"  # train + export from the wheel
fi
rm -f "$work/events.jsonl"
(cd "$work" && venv-edge/bin/anodet-run --model model.onnx --source data/widget/test --events events.jsonl \
  --backend onnx-cpu >/dev/null)
frames=$(wc -l < "$work/events.jsonl")
echo "check_wheel: edge install (no torch) streamed $frames frames through anodet-run"
[ "$frames" -gt 0 ] || { echo "check_wheel: no events written" >&2; exit 1; }
