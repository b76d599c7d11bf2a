#!/usr/bin/env bash
# Testing on a SLURM cluster with srun, one task per GPU (MMSeg's / MMPretrain's slurm_test.sh):
#   tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py options]
# GPUS (total, default 8), GPUS_PER_NODE (default 8), CPUS_PER_TASK (default 5) and SRUN_ARGS
# (extra srun options) come from the environment; tools/test.py runs with --launcher slurm,
# which reads the ranks and the master address from SLURM's variables. PORT (default 29500) is
# the rendezvous port. PYTHON picks the interpreter (default: the project's .venv if built,
# else python).
set -euo pipefail
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-}
TOOLS=$(dirname "$0")
VENV_PY=$TOOLS/../.venv/bin/python
[ -x "$VENV_PY" ] && DEFAULT_PY=$VENV_PY || DEFAULT_PY=python
# shellcheck disable=SC2086  # SRUN_ARGS is a list of options
MASTER_PORT=${PORT:-29500} PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}" \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "${PYTHON:-$DEFAULT_PY}" -u "$TOOLS/test.py" "$CONFIG" "$CHECKPOINT" --launcher slurm "${@:5}"
