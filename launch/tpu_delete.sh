#!/bin/bash
# Delete a TPU slice made by launch/tpu_create.sh (its queued resource and its nodes).
#
# Usage: launch/tpu_delete.sh --name NAME --zone ZONE [--project P] [--direct] [--dry-run]
#   --direct      the slice was created with tpu_create.sh --direct (no queued resource)
#   -h, --help    this help
# Queued: `gcloud compute tpus queued-resources delete NAME --force` deletes the nodes first.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NAME=${CODERL_TPU_NAME:-}
ZONE=${CODERL_TPU_ZONE:-}
PROJECT=${CODERL_TPU_PROJECT:-}
QUEUED=1
while [[ $# -gt 0 ]]; do
  parse_common_tpu_flag "$@"
  if ((PARSED)); then shift "$PARSED"; continue; fi
  case $1 in
    --direct) QUEUED=0; shift ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

check_common_tpu
if ((QUEUED)); then
  run gcloud compute tpus queued-resources delete "$NAME" "${TARGET[@]}" --force --quiet
else
  run gcloud compute tpus tpu-vm delete "$NAME" "${TARGET[@]}" --quiet
fi
