#!/bin/bash
# Copy this checkout (without .git, .venv and work folders) to every worker of a TPU slice.
#
# Usage: launch/tpu_copy.sh --name NAME --zone ZONE [--project P] [--repo DIR] [--remote-dir D]
#   --repo DIR        the checkout to copy (default: the one holding this script)
#   --remote-dir D    where it lands on each worker, relative to home (default: coderl-jax);
#                     an existing .venv there is kept, so re-copying after a code change is cheap
#   --dry-run         print the commands, one per line, without running them
#   -h, --help        this help
# It packs a tarball locally, copies it with `gcloud compute tpus tpu-vm scp --worker=all` and
# unpacks it on every worker with `gcloud compute tpus tpu-vm ssh --worker=all`.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NAME=${CODERL_TPU_NAME:-}
ZONE=${CODERL_TPU_ZONE:-}
PROJECT=${CODERL_TPU_PROJECT:-}
REPO=$DEFAULT_REPO
REMOTE_DIR=coderl-jax
while [[ $# -gt 0 ]]; do
  parse_common_tpu_flag "$@"
  if ((PARSED)); then shift "$PARSED"; continue; fi
  case $1 in
    --repo) need_value "$@"; REPO=$2; shift 2 ;;
    --remote-dir) need_value "$@"; REMOTE_DIR=$2; shift 2 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

check_common_tpu
check_remote_dir "$REMOTE_DIR"
[[ -f $REPO/pyproject.toml && -d $REPO/coderl_jax ]] || die "--repo '$REPO' is not a coderl-jax checkout"
REPO=$(cd "$REPO" && pwd)
TARBALL="${TMPDIR:-/tmp}/coderl-jax-$NAME.tar.gz"
REMOTE_TAR="$REMOTE_DIR.tar.gz"

run tar -czf "$TARBALL" --exclude=./.git --exclude=./.venv --exclude=./demo_workdir \
  --exclude=__pycache__ --exclude='*.egg-info' -C "$REPO" .
run gcloud compute tpus tpu-vm scp "$TARBALL" "$NAME:$REMOTE_TAR" "${TARGET[@]}" --worker=all
run gcloud compute tpus tpu-vm ssh "$NAME" "${TARGET[@]}" --worker=all \
  --command "mkdir -p ~/$REMOTE_DIR && tar -xzf ~/$REMOTE_TAR -C ~/$REMOTE_DIR && rm ~/$REMOTE_TAR"
