#!/usr/bin/env bash
# The GPU checks of issue 15 in one command, for the device tool's H200 machine (Python 3.12 with
# torch 2.11 / CUDA 13, no network, no MM packages). docs/performance.md, "GPU checks", says how to
# run it; tools/gpu_prepare.sh builds the carried folder (gpu_carry/) first, here.
#
#   bash tools/gpu_check.sh [--only a,b] [--skip a,b]    on the GPU machine; $OUT: the reports
#   bash tools/gpu_check.sh --dry-run                    here, on the CPU: toy sizes, no install
#
# 1. install (skipped by --dry-run; reused when a warm machine still has .gpu_site/):
#    the carried wheels into .gpu_site/lib (seconds), then mmcv 2.1.0 built from its sdist against
#    the machine's torch, with its C++ ops for the CPU only: MMSeg 1.2.2 imports mmcv.ops, but
#    nothing these checks run calls an mmcv op (the ViT is ours, SETR-PUP's heads are plain
#    convolutions). The CPU build is 77 C++ files; here it took about 22 min with 2 jobs, so with
#    MAX_JOBS=16 about 3 min (an estimate, not a measurement). FORCE_CUDA=1 would add 58 CUDA files
#    compiled by nvcc, roughly doubling that or worse, for no op these checks use.
# 2. tools/analysis/gpu_check.py run: the checks, each with its own timeout, inside what is left of
#    GPU_CHECK_BUDGET_S (default 570 s, under the device tool's 600 s per command); every figure
#    goes to $OUT/gpu_check.json, the checks' output to $OUT/gpu_check.log, the install's to
#    $OUT/install.log.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CARRY=${GPU_CARRY:-gpu_carry}
OUT_DIR=${OUT:-$ROOT/work_dirs/gpu_check/out}
BUDGET_S=${GPU_CHECK_BUDGET_S:-570}
start=$(date +%s)
mkdir -p "$OUT_DIR"
if [ ! -d "$CARRY/wheels" ] || [ ! -d "$CARRY/data" ]; then
  echo "[gpu_check] $ROOT/$CARRY/ is missing or incomplete: run 'bash tools/gpu_prepare.sh' where" \
    "there is network, and pass carry=[\"$CARRY\"] to the device tool's run" >&2
  exit 2
fi

dry=0
for arg in "$@"; do [ "$arg" = --dry-run ] && dry=1; done
if [ "$dry" = 1 ]; then
  if [ -x .venv/bin/python ]; then PY=${PYTHON:-.venv/bin/python}; else PY=${PYTHON:-python3}; fi
  DEVICE=cpu
  WORK=$ROOT/work_dirs/gpu_check/dry
  export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
  install_args=()
else
  PY=${PYTHON:-python3}
  DEVICE=cuda
  SITE=$ROOT/.gpu_site
  WORK=$SITE/work
  mkdir -p "$SITE/lib" "$WORK"
  export PYTHONPATH=$SITE/lib:$ROOT${PYTHONPATH:+:$PYTHONPATH}
  LOG=$OUT_DIR/install.log
  nvidia-smi >>"$LOG" 2>&1

  t0=$(date +%s)
  want=$(ls "$CARRY"/wheels/*.whl | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$SITE/wheels.stamp" 2>/dev/null)" = "$want" ]; then
    wheels_rc=0; wheels_reused=true
  else
    timeout 120 "$PY" -m pip install --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE/lib" "$CARRY"/wheels/*.whl >>"$LOG" 2>&1
    wheels_rc=$?; wheels_reused=false
    [ "$wheels_rc" = 0 ] && echo "$want" >"$SITE/wheels.stamp"
  fi
  t1=$(date +%s)
  if "$PY" -c 'import mmcv.ops' >>"$LOG" 2>&1; then
    mmcv_rc=0; mmcv_reused=true
  else
    # CUDA hidden while building: mmcv's setup.py then builds the CPU ops only (see above)
    CUDA_VISIBLE_DEVICES= MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-16} \
      timeout 360 "$PY" -m pip install --no-index --no-deps --no-build-isolation --no-cache-dir \
      --target "$SITE/lib" "$CARRY"/wheels/mmcv-2.1.0.tar.gz >>"$LOG" 2>&1
    mmcv_rc=$?; mmcv_reused=false
  fi
  t2=$(date +%s)
  printf '{"wheels": {"returncode": %d, "seconds": %d, "reused": %s}, "mmcv": {"returncode": %d, "seconds": %d, "reused": %s, "ops": "cpu"}}\n' \
    "$wheels_rc" $((t1 - t0)) "$wheels_reused" "$mmcv_rc" $((t2 - t1)) "$mmcv_reused" \
    >"$SITE/install.json"
  install_args=(--install-report "$SITE/install.json")
  echo "[gpu_check] install: wheels rc $wheels_rc ($((t1 - t0)) s), mmcv rc $mmcv_rc ($((t2 - t1)) s)"
fi

left=$(( BUDGET_S - ($(date +%s) - start) ))
"$PY" tools/analysis/gpu_check.py run --out-dir "$OUT_DIR" --work-dir "$WORK" \
  --carry-dir "$CARRY" --device "$DEVICE" --deadline-s "$left" "${install_args[@]}" "$@"
