#!/bin/bash
# Run `coderl train` with a config on every worker of a TPU slice (one process per host).
#
# Usage: launch/tpu_run.sh --name NAME --zone ZONE --config configs/X.py --workdir gs://B/RUN
#                          [--project P] [--foreground] [-- --config.a.b=v ...]
#   --config PATH     config file, relative to the checkout (checked to exist in --repo);
#                     FILE.py:TOPOLOGY picks a pod mesh (coderl_jax/topologies.py), e.g. :v4-32
#   --workdir URI     a gs:// path: every host writes checkpoints and logs to the same place
#   --repo DIR        the local checkout that was copied (default: the one holding this script)
#   --remote-dir D    the copied checkout on the workers, relative to home (default: coderl-jax)
#   --foreground      stay attached and stream the output (the job ends if ssh disconnects);
#                     by default the job runs detached (setsid nohup), logging to
#                     ~/D/logs/train.log and its process-group id to ~/D/logs/train.pid
#   --dry-run         print the command, one per line, without running it
#   -h, --help        this help
#   -- OVERRIDES      --config.a.b=v overrides passed on to coderl train
# The job gets CODERL_MULTIHOST=1, so coderl train calls jax.distributed.initialize(), which
# finds the slice's other hosts itself on Cloud TPU. Follow it with launch/tpu_logs.sh; end it
# with launch/tpu_stop.sh.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NAME=${CODERL_TPU_NAME:-}
ZONE=${CODERL_TPU_ZONE:-}
PROJECT=${CODERL_TPU_PROJECT:-}
CONFIG=""
WORKDIR=""
REPO=$DEFAULT_REPO
REMOTE_DIR=coderl-jax
FOREGROUND=0
OVERRIDES=()
while [[ $# -gt 0 ]]; do
  parse_common_tpu_flag "$@"
  if ((PARSED)); then shift "$PARSED"; continue; fi
  case $1 in
    --config) need_value "$@"; CONFIG=$2; shift 2 ;;
    --workdir) need_value "$@"; WORKDIR=$2; shift 2 ;;
    --repo) need_value "$@"; REPO=$2; shift 2 ;;
    --remote-dir) need_value "$@"; REMOTE_DIR=$2; shift 2 ;;
    --foreground) FOREGROUND=1; shift ;;
    --) shift; OVERRIDES=("$@"); break ;;
    *) die "unknown argument '$1' (see --help; config overrides go after --)" ;;
  esac
done

check_common_tpu
check_remote_dir "$REMOTE_DIR"
[[ -n $CONFIG ]] || die "--config is required (e.g. configs/codet5.py:topology=v4-32)"
[[ $CONFIG =~ ^[A-Za-z0-9_][A-Za-z0-9_./-]*\.py(:[A-Za-z0-9_.,=-]+)?$ && $CONFIG != *..* ]] \
  || die "--config '$CONFIG' must be a .py path relative to the checkout (FILE.py[:ARG])"
[[ -f $REPO/${CONFIG%%:*} ]] || die "--config '${CONFIG%%:*}' not found in $REPO"
[[ -n $WORKDIR ]] || die "--workdir is required (a gs:// path)"
[[ $WORKDIR =~ ^gs://[a-z0-9][-a-z0-9_.]{1,61}[a-z0-9](/[^[:space:]\']*)?$ ]] \
  || die "--workdir '$WORKDIR' must be a gs://BUCKET/PATH that every worker can reach"
for o in ${OVERRIDES[@]+"${OVERRIDES[@]}"}; do
  [[ $o =~ ^--config\.[A-Za-z0-9_.]+=.*$ ]] || die "override '$o' is not of the form --config.a.b=v"
done

TRAIN=(".venv/bin/coderl" train --config "$CONFIG" --workdir "$WORKDIR" ${OVERRIDES[@]+"${OVERRIDES[@]}"})
TRAIN_LINE=$(join_quoted "${TRAIN[@]}")
if ((FOREGROUND)); then
  REMOTE="set -o pipefail; cd ~/$REMOTE_DIR && mkdir -p logs && CODERL_MULTIHOST=1 $TRAIN_LINE 2>&1 | tee logs/train.log"
else
  REMOTE="cd ~/$REMOTE_DIR && mkdir -p logs && (CODERL_MULTIHOST=1 setsid nohup $TRAIN_LINE > logs/train.log 2>&1 < /dev/null & echo \$! > logs/train.pid)"
fi

run gcloud compute tpus tpu-vm ssh "$NAME" "${TARGET[@]}" --worker=all --command "$REMOTE"
