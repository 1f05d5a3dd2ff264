#!/bin/bash
# Build the virtual environment with the TPU jax build on every worker of a TPU slice.
#
# Usage: launch/tpu_setup.sh --name NAME --zone ZONE [--project P] [options]
#   --remote-dir D    the copied checkout, relative to home (default: coderl-jax)
#   --python PY       interpreter for the venv (default: python3.11, installed with apt-get on
#                     the Ubuntu 22.04 TPU images, which ship 3.10)
#   --skip-apt        do not apt-get install the interpreter (it is already there)
#   --no-check        skip the final check that jax sees every TPU chip of the slice
#   --dry-run         print the commands, one per line, without running them
#   -h, --help        this help
# On every worker (`gcloud compute tpus tpu-vm ssh --worker=all`): PY -m venv .venv, then
# pip install -r requirements.txt -r requirements-tpu.txt, then the package itself; then every
# worker prints jax.process_index() / jax.device_count() (all workers must take part).

set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NAME=${CODERL_TPU_NAME:-}
ZONE=${CODERL_TPU_ZONE:-}
PROJECT=${CODERL_TPU_PROJECT:-}
REMOTE_DIR=coderl-jax
PYTHON=python3.11
APT=1
CHECK=1
while [[ $# -gt 0 ]]; do
  parse_common_tpu_flag "$@"
  if ((PARSED)); then shift "$PARSED"; continue; fi
  case $1 in
    --remote-dir) need_value "$@"; REMOTE_DIR=$2; shift 2 ;;
    --python) need_value "$@"; PYTHON=$2; shift 2 ;;
    --skip-apt) APT=0; shift ;;
    --no-check) CHECK=0; shift ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

check_common_tpu
check_remote_dir "$REMOTE_DIR"
[[ $PYTHON =~ ^python3(\.[0-9]+)?$ ]] || die "--python '$PYTHON' is not like python3.11"

STEPS=()
if ((APT)); then
  STEPS+=("sudo apt-get update -q" "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q $PYTHON ${PYTHON}-venv")
fi
STEPS+=(
  "cd ~/$REMOTE_DIR"
  "$PYTHON -m venv .venv"
  ".venv/bin/pip install -q --upgrade pip"
  ".venv/bin/pip install -q -r requirements.txt -r requirements-tpu.txt"
  ".venv/bin/pip install -q --no-deps -e ."
)
if ((CHECK)); then
  STEPS+=(".venv/bin/python -c 'import jax; print(jax.process_index(), jax.process_count(), jax.device_count(), jax.devices()[0].platform)'")
fi
REMOTE=""
for step in "${STEPS[@]}"; do REMOTE+="${REMOTE:+ && }$step"; done

run gcloud compute tpus tpu-vm ssh "$NAME" "${TARGET[@]}" --worker=all --command "$REMOTE"
