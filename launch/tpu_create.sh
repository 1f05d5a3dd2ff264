#!/bin/bash
# Create a Cloud TPU VM slice (by default through a queued resource, the recommended way).
#
# Usage: launch/tpu_create.sh --name NAME --zone ZONE --accelerator-type TYPE [options]
#   --name NAME              TPU VM name (also the queued resource id); env CODERL_TPU_NAME
#   --zone ZONE              e.g. us-central2-b (v4), us-west4-a (v5e); env CODERL_TPU_ZONE
#   --project PROJECT        GCP project (default: gcloud's configured one); env CODERL_TPU_PROJECT
#   --accelerator-type TYPE  v4-32 (16 chips, 4 hosts), v5litepod-64 (64 chips, 8 hosts), ...
#   --runtime-version V      TPU software version (default by generation: v4 and older
#                            tpu-ubuntu2204-base, v5e v2-alpha-tpuv5-lite, v5p v2-alpha-tpuv5,
#                            v6e v2-alpha-tpuv6e)
#   --direct                 create the TPU VM now (tpu-vm create) instead of queueing for it
#   --spot | --reserved      spot capacity, or the project's reservation
#   --valid-until-duration D queued request expires after D (e.g. 6h)
#   --dry-run                print the gcloud commands, one per line, without running them
#   -h, --help               this help
# Queued resources wait for capacity: watch the state with
#   gcloud compute tpus queued-resources describe NAME --zone ZONE
# until it is ACTIVE, then run launch/tpu_copy.sh and launch/tpu_setup.sh.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NAME=${CODERL_TPU_NAME:-}
ZONE=${CODERL_TPU_ZONE:-}
PROJECT=${CODERL_TPU_PROJECT:-}
ACCELERATOR=""
RUNTIME=""
QUEUED=1
CAPACITY=""
VALID_UNTIL=""
while [[ $# -gt 0 ]]; do
  parse_common_tpu_flag "$@"
  if ((PARSED)); then shift "$PARSED"; continue; fi
  case $1 in
    --accelerator-type) need_value "$@"; ACCELERATOR=$2; shift 2 ;;
    --runtime-version) need_value "$@"; RUNTIME=$2; shift 2 ;;
    --direct) QUEUED=0; shift ;;
    --spot) CAPACITY=--spot; shift ;;
    --reserved) CAPACITY=--reserved; shift ;;
    --valid-until-duration) need_value "$@"; VALID_UNTIL=$2; shift 2 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

check_common_tpu
[[ -n $ACCELERATOR ]] || die "--accelerator-type is required (e.g. v4-32, v5litepod-64)"
check_accelerator_type "$ACCELERATOR"
if [[ -z $RUNTIME ]]; then
  RUNTIME=$(tpu_runtime_version "$ACCELERATOR") \
    || die "no default runtime version for '$ACCELERATOR'; pass --runtime-version"
fi
[[ $RUNTIME =~ ^[a-z0-9][-a-z0-9.]*$ ]] || die "--runtime-version '$RUNTIME' is not a version name"
if [[ -n $VALID_UNTIL ]]; then
  ((QUEUED)) || die "--valid-until-duration applies to queued resources, not --direct"
  [[ $VALID_UNTIL =~ ^[0-9]+[smhd]$ ]] || die "--valid-until-duration '$VALID_UNTIL' is not like 6h"
fi

EXTRA=()
if [[ -n $CAPACITY ]]; then EXTRA+=("$CAPACITY"); fi
if [[ -n $VALID_UNTIL ]]; then EXTRA+=("--valid-until-duration=$VALID_UNTIL"); fi

if ((QUEUED)); then
  run gcloud compute tpus queued-resources create "$NAME" --node-id="$NAME" "${TARGET[@]}" \
    --accelerator-type="$ACCELERATOR" --runtime-version="$RUNTIME" "${EXTRA[@]}"
else
  run gcloud compute tpus tpu-vm create "$NAME" "${TARGET[@]}" \
    --accelerator-type="$ACCELERATOR" --version="$RUNTIME" "${EXTRA[@]}"
fi
