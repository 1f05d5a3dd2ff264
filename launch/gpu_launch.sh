#!/bin/bash
# Start one `coderl train` process on this node of a multi-node GPU job (no torchrun needed).
#
# Usage: launch/gpu_launch.sh --config configs/X.py --workdir DIR [options] [-- OVERRIDES]
#   --config PATH         config file (absolute, or relative to this folder or the checkout)
#   --workdir DIR         checkpoint/log folder on a filesystem every node shares (or gs://)
#   --coordinator H:P     address of process 0's coordinator service
#   --num-processes N     processes in the job (one per node; each sees all its node's GPUs)
#   --process-id I        this process's index, 0..N-1
#   --port P              coordinator port when it comes from SLURM (default: derived from
#                         SLURM_JOB_ID as JAX does, 61440 + id % 4096)
#   --coderl PATH         the coderl executable (default: <checkout>/.venv/bin/coderl)
#   --dry-run             print the command, one line, without running it
#   -h, --help            this help
#   -- OVERRIDES          --config.a.b=v overrides passed on to coderl train
# Without the three explicit flags the values come from SLURM (run it under srun, one task per
# node): the coordinator is the first host of SLURM_JOB_NODELIST, N is SLURM_NTASKS and I is
# SLURM_PROCID. The process gets CODERL_MULTIHOST=1 and CODERL_COORDINATOR, CODERL_NUM_PROCESSES,
# CODERL_PROCESS_ID, which coderl train hands to jax.distributed.initialize()
# (coderl_jax/train/distributed.py).
# See launch/gpu_slurm.sbatch for a batch script.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CONFIG=""
WORKDIR=""
COORDINATOR=""
NUM_PROCESSES=""
PROCESS_ID=""
PORT=""
CODERL="$DEFAULT_REPO/.venv/bin/coderl"
OVERRIDES=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --config) need_value "$@"; CONFIG=$2; shift 2 ;;
    --workdir) need_value "$@"; WORKDIR=$2; shift 2 ;;
    --coordinator) need_value "$@"; COORDINATOR=$2; shift 2 ;;
    --num-processes) need_value "$@"; NUM_PROCESSES=$2; shift 2 ;;
    --process-id) need_value "$@"; PROCESS_ID=$2; shift 2 ;;
    --port) need_value "$@"; PORT=$2; shift 2 ;;
    --coderl) need_value "$@"; CODERL=$2; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; OVERRIDES=("$@"); break ;;
    *) die "unknown argument '$1' (see --help; config overrides go after --)" ;;
  esac
done

# first_host NODELIST: the first host of a SLURM node list such as "gpu[003-004,010],gpu20".
first_host() {
  local list=$1 head prefix rest
  if command -v scontrol > /dev/null 2>&1; then
    scontrol show hostnames "$list" | head -n 1
    return
  fi
  head=${list%%,*}
  if [[ $list == *\[* && ${list%%\[*} != *,* ]]; then
    prefix=${list%%\[*}
    rest=${list#*\[}
    head="$prefix${rest%%[-,\]]*}"
  fi
  printf '%s\n' "$head"
}

[[ -n $CONFIG ]] || die "--config is required"
CONFIG_FILE=${CONFIG%%:*}  # FILE.py[:TOPOLOGY]
CONFIG_ARG=${CONFIG#"$CONFIG_FILE"}
[[ $CONFIG_FILE == *.py ]] || die "--config '$CONFIG' must be a .py config file (FILE.py[:TOPOLOGY])"
# A relative config is read from the current folder as coderl would, else from the checkout.
if [[ ! -f $CONFIG_FILE && $CONFIG_FILE != /* && -f $DEFAULT_REPO/$CONFIG_FILE ]]; then
  CONFIG_FILE="$DEFAULT_REPO/$CONFIG_FILE"
fi
[[ -f $CONFIG_FILE ]] || die "--config '$CONFIG_FILE' not found"
CONFIG="$CONFIG_FILE$CONFIG_ARG"
[[ -n $WORKDIR ]] || die "--workdir is required (a folder every node shares, or gs://)"
for o in ${OVERRIDES[@]+"${OVERRIDES[@]}"}; do
  [[ $o =~ ^--config\.[A-Za-z0-9_.]+=.*$ ]] || die "override '$o' is not of the form --config.a.b=v"
done

EXPLICIT=0
for v in "$COORDINATOR" "$NUM_PROCESSES" "$PROCESS_ID"; do [[ -n $v ]] && EXPLICIT=$((EXPLICIT + 1)); done
if ((EXPLICIT == 0)); then
  NODELIST=${SLURM_JOB_NODELIST:-${SLURM_NODELIST:-}}
  if [[ -z $NODELIST || -z ${SLURM_NTASKS:-} || -z ${SLURM_PROCID:-} ]]; then
    die "no job layout: pass --coordinator, --num-processes and --process-id, or run under srun"
  fi
  if [[ -z $PORT ]]; then
    [[ ${SLURM_JOB_ID:-} =~ ^[0-9]+$ ]] || die "SLURM_JOB_ID is not set; pass --port"
    PORT=$((61440 + SLURM_JOB_ID % 4096))
  fi
  if ! [[ $PORT =~ ^[0-9]+$ ]] || ((PORT < 1 || PORT > 65535)); then
    die "--port '$PORT' is not a port"
  fi
  HOST=$(first_host "$NODELIST")
  [[ -n $HOST ]] || die "cannot find the first host of SLURM_JOB_NODELIST '$NODELIST'"
  COORDINATOR="$HOST:$PORT"
  NUM_PROCESSES=$SLURM_NTASKS
  PROCESS_ID=$SLURM_PROCID
elif ((EXPLICIT != 3)); then
  die "--coordinator, --num-processes and --process-id go together (or none, under SLURM)"
elif [[ -n $PORT ]]; then
  die "--port applies to SLURM jobs; put the port in --coordinator HOST:PORT"
fi

[[ $COORDINATOR =~ ^[A-Za-z0-9._-]+:([0-9]+)$ ]] \
  || die "--coordinator '$COORDINATOR' is not HOST:PORT"
((BASH_REMATCH[1] >= 1 && BASH_REMATCH[1] <= 65535)) || die "--coordinator port out of range"
[[ $NUM_PROCESSES =~ ^[1-9][0-9]*$ ]] || die "--num-processes '$NUM_PROCESSES' must be a positive integer"
if ! [[ $PROCESS_ID =~ ^[0-9]+$ ]] || ((PROCESS_ID >= NUM_PROCESSES)); then
  die "--process-id '$PROCESS_ID' must be in 0..$((NUM_PROCESSES - 1))"
fi

run_exec env CODERL_MULTIHOST=1 "CODERL_COORDINATOR=$COORDINATOR" \
  "CODERL_NUM_PROCESSES=$NUM_PROCESSES" "CODERL_PROCESS_ID=$PROCESS_ID" \
  "$CODERL" train --config "$CONFIG" --workdir "$WORKDIR" ${OVERRIDES[@]+"${OVERRIDES[@]}"}
