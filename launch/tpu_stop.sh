#!/bin/bash
# Stop the training job started by launch/tpu_run.sh on every worker (the TPU stays up).
#
# Usage: launch/tpu_stop.sh --name NAME --zone ZONE [--project P] [--remote-dir D] [--dry-run]
# Sends SIGTERM to the job's process group (its id is in ~/D/logs/train.pid on each worker),
# which frees the TPU chips for the next run. Multi-host slices cannot be stopped as VMs;
# delete them with launch/tpu_delete.sh when done.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NAME=${CODERL_TPU_NAME:-}
ZONE=${CODERL_TPU_ZONE:-}
PROJECT=${CODERL_TPU_PROJECT:-}
REMOTE_DIR=coderl-jax
while [[ $# -gt 0 ]]; do
  parse_common_tpu_flag "$@"
  if ((PARSED)); then shift "$PARSED"; continue; fi
  case $1 in
    --remote-dir) need_value "$@"; REMOTE_DIR=$2; shift 2 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

check_common_tpu
check_remote_dir "$REMOTE_DIR"
# shellcheck disable=SC2088  # the tilde is expanded by the workers' shell
PIDFILE="~/$REMOTE_DIR/logs/train.pid"
run gcloud compute tpus tpu-vm ssh "$NAME" "${TARGET[@]}" --worker=all \
  --command "if [ -f $PIDFILE ]; then kill -TERM -- -\$(cat $PIDFILE) || true; rm -f $PIDFILE; fi"
