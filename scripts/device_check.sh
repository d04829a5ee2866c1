#!/usr/bin/env bash
# Device check for a machine with an NVIDIA GPU: train a small model there, export FP32/FP16 ONNX,
# build the TensorRT engine, check every row against ONNX Runtime CPU and time TensorRT, ONNX
# Runtime CUDA/TensorRT EPs and PyTorch eager FP32/FP16 on CUDA, all through `anodet-bench`.
# Installs nothing from the network.
#
#   bash scripts/device_check.sh            # OUT=folder for the results (default /tmp/device_check)
#
# Python packages the machine lacks travel as wheels in $WHEELS (default .whl: tensorrt,
# cuda-python, onnxruntime-gpu built for its Python); they are installed --no-index --no-deps
# into /tmp/site. A row whose library is missing is reported as skipped with the reason, so
# the script also runs (and is tested) on a machine without a GPU.
# Settings (environment): SIZE input px (128), BATCHES (1,8), WARMUP (10), RUNS (50),
# BACKENDS (every row but the CPU-only INT8 one), PYTHON (python3), WORK (/tmp/anodet_device_check).
# Writes to $OUT: env.txt (GPU, versions), device_check.json (bench.json), device_check.md
# (bench.md), rows.log (the last lines of every row's log), train.log. Exit status: anodet-bench's
# (1 when an engine disagrees with ONNX Runtime CPU or every row failed), 3 when setup failed.
set -uo pipefail

OUT=${OUT:-/tmp/device_check}
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
SIZE=${SIZE:-128}
BATCHES=${BATCHES:-1,8}
WARMUP=${WARMUP:-10}
RUNS=${RUNS:-50}
BACKENDS=${BACKENDS:-onnx-cpu,onnx-fp16,onnx-cuda,onnx-cuda-fp16,onnx-trt,tensorrt,torch,torch-cuda,torch-cuda-fp16}
WORK=${WORK:-/tmp/anodet_device_check}
mkdir -p "$OUT" "$WORK"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if compgen -G "$WHEELS/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$WHEELS"/*.whl || { echo "error: installing the wheels in $WHEELS failed" >&2; exit 3; }
  export PYTHONPATH="/tmp/site:$PYTHONPATH"
  # NVIDIA's tensorrt wheel keeps libnvinfer in tensorrt_libs/; ONNX Runtime's TensorRT EP looks it up by name
  [ -d /tmp/site/tensorrt_libs ] && export LD_LIBRARY_PATH="/tmp/site/tensorrt_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

{
  nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv 2>&1 || echo "no nvidia-smi"
  "$PY" - <<'EOF'
import importlib, platform
print("python", platform.python_version())
for name in ("numpy", "torch", "onnx", "onnxruntime", "tensorrt"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as exc:  # a broken install is reported, not fatal
        print(name, "missing:", exc)
try:
    import onnxruntime
    print("onnxruntime providers", onnxruntime.get_available_providers())
except ImportError:
    pass
try:
    from anodet.gpu import import_cudart
    print("cuda-python runtime bindings", import_cudart().__name__)
except Exception as exc:
    print("cuda-python missing:", exc)
EOF
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# A small real model: synthetic RGB-D parts, ResNet-18 with random init (nothing is downloaded).
"$PY" - "$WORK" "$SIZE" >"$OUT/train.log" 2>&1 <<'EOF' || { tail -20 "$OUT/train.log" >&2; exit 3; }
import shutil, sys
from pathlib import Path

from anodet.config import from_dict
from anodet.data.synthetic import write_dataset
from anodet.train import train

work, size = Path(sys.argv[1]), int(sys.argv[2])
data = write_dataset(work / "data", size=size, n_train=24, n_val=6, n_test_per_type=4, seed=0)
cfg = from_dict({"data": {"image_size": size},
                 "model": {"backbone": "resnet18", "feature_size": size // 4, "reduce_channels": 64,
                           "latent_dim": 32, "blur_sigma": 2.0},
                 "train": {"epochs": 10, "pixels_per_image": 512, "batch_size": 2048}})
shutil.rmtree(work / "exp", ignore_errors=True)
res = train(cfg, data, work / "exp", weights="none", device="auto")
print("checkpoint", res.best_checkpoint, "data", data)
EOF
DATA=$(sed -n 's/.* data \(.*\)$/\1/p' "$OUT/train.log" | tail -1)
CKPT="$WORK/exp/checkpoints/best.pt"
[ -f "$CKPT" ] && [ -d "$DATA" ] || { echo "error: training wrote no checkpoint (see train.log)" >&2; exit 3; }

rm -rf "$WORK/bench"
"$PY" -m anodet.cli bench --checkpoint "$CKPT" --data "$DATA" --backends "$BACKENDS" --batch "$BATCHES" \
  --warmup "$WARMUP" --runs "$RUNS" --out "$WORK/bench"
status=$?
cp "$WORK/bench/bench.json" "$OUT/device_check.json" 2>/dev/null
cp "$WORK/bench/bench.md" "$OUT/device_check.md" 2>/dev/null
for log in "$WORK"/bench/rows/*.log; do
  [ -f "$log" ] && { echo "== $(basename "$log")"; tail -15 "$log"; }
done >"$OUT/rows.log"
echo "device check: anodet-bench exit status $status; results in $OUT"
exit $status
