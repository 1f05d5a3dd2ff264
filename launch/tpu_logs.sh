#!/bin/bash
# Stream the training log of a job started by launch/tpu_run.sh.
#
# Usage: launch/tpu_logs.sh --name NAME --zone ZONE [--project P] [--worker W] [--lines N]
#   --worker W        0 (default: process 0 logs the metrics), another worker index, or all
#   --lines N         start with the last N lines (default 100)
#   --no-follow       print and exit instead of following the log
#   --remote-dir D    the copied checkout on the workers, relative to home (default: coderl-jax)
#   --dry-run         print the command without running it
#   -h, --help        this help

set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NAME=${CODERL_TPU_NAME:-}
ZONE=${CODERL_TPU_ZONE:-}
PROJECT=${CODERL_TPU_PROJECT:-}
WORKER=0
LINES_=100
FOLLOW=-F
REMOTE_DIR=coderl-jax
while [[ $# -gt 0 ]]; do
  parse_common_tpu_flag "$@"
  if ((PARSED)); then shift "$PARSED"; continue; fi
  case $1 in
    --worker) need_value "$@"; WORKER=$2; shift 2 ;;
    --lines) need_value "$@"; LINES_=$2; shift 2 ;;
    --no-follow) FOLLOW=""; shift ;;
    --remote-dir) need_value "$@"; REMOTE_DIR=$2; shift 2 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

check_common_tpu
check_remote_dir "$REMOTE_DIR"
[[ $WORKER =~ ^([0-9]+|all)$ ]] || die "--worker '$WORKER' must be a worker index or all"
[[ $LINES_ =~ ^[0-9]+$ ]] || die "--lines '$LINES_' must be a non-negative integer"

run gcloud compute tpus tpu-vm ssh "$NAME" "${TARGET[@]}" --worker="$WORKER" \
  --command "tail -n $LINES_ ${FOLLOW:+$FOLLOW }~/$REMOTE_DIR/logs/train.log"
