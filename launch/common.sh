# shellcheck shell=bash
# Helpers shared by the launch scripts (sourced, never run): one-line errors, --help from the
# script's header comment, argument validators, and `run`, which prints a command (--dry-run) or
# echoes it to stderr and runs it. Printed commands are quoted so they can be pasted into bash.

PROG=$(basename "$0")
DRY_RUN=0
LAUNCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034  # used by the scripts that source this file
DEFAULT_REPO=$(dirname "$LAUNCH_DIR")

# die MESSAGE: one-line error on stderr, exit status 2.
die() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 2
}

# usage: print the script's header comment (from line 2 to the first blank line).
usage() {
  sed -n '2,/^$/{/^#/!d;s/^# \{0,1\}//;p}' "$0"
}

# quote ARG: ARG unchanged when it is shell-safe, else single-quoted.
quote() {
  local s=$1
  if [[ -n $s && $s =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
    printf '%s' "$s"
  else
    printf "'%s'" "${s//\'/\'\\\'\'}"
  fi
}

# join_quoted ARGS...: the arguments as one shell-quoted command line.
join_quoted() {
  local out="" a
  for a in "$@"; do
    out+="${out:+ }$(quote "$a")"
  done
  printf '%s' "$out"
}

# run CMD ARGS...: print the command (dry run) or echo it to stderr and run it.
run() {
  if ((DRY_RUN)); then
    printf '%s\n' "$(join_quoted "$@")"
  else
    printf '+ %s\n' "$(join_quoted "$@")" >&2
    "$@"
  fi
}

# run_exec CMD ARGS...: like run, but the command replaces this shell (signals reach it).
run_exec() {
  if ((DRY_RUN)); then
    printf '%s\n' "$(join_quoted "$@")"
  else
    printf '+ %s\n' "$(join_quoted "$@")" >&2
    exec "$@"
  fi
}

# need_value FLAG NEXT: fail unless the flag has a value.
need_value() {
  [[ $# -ge 2 && -n $2 && $2 != --* ]] || die "$1 needs a value"
}

check_name() {  # a GCP resource name: lowercase letters, digits, hyphens; starts with a letter
  [[ $1 =~ ^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$ ]] \
    || die "--name '$1' must be lowercase letters, digits and hyphens, starting with a letter"
}

check_zone() {
  [[ $1 =~ ^[a-z]+-[a-z]+[0-9]+-[a-z]$ ]] || die "--zone '$1' is not a zone like us-central2-b"
}

check_project() {
  [[ -z $1 || $1 =~ ^[a-z][-a-z0-9]{4,28}[a-z0-9]$ ]] || die "--project '$1' is not a project id"
}

check_remote_dir() {
  [[ $1 =~ ^[A-Za-z0-9._][A-Za-z0-9._/-]*$ && $1 != *..* ]] \
    || die "--remote-dir '$1' must be a plain path relative to the workers' home directory"
}

# tpu_runtime_version ACCELERATOR_TYPE: the TPU software version for JAX on that generation
# (cloud.google.com/tpu/docs/runtimes: v4 and older tpu-ubuntu2204-base, v5e
# v2-alpha-tpuv5-lite, v5p v2-alpha-tpuv5, v6e v2-alpha-tpuv6e).
tpu_runtime_version() {
  case $1 in
    v2-* | v3-* | v4-*) echo tpu-ubuntu2204-base ;;
    v5litepod-* | v5e-*) echo v2-alpha-tpuv5-lite ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v6e-*) echo v2-alpha-tpuv6e ;;
    *) return 1 ;;
  esac
}

check_accelerator_type() {
  [[ $1 =~ ^(v2|v3|v4|v5p|v5litepod|v6e)-[0-9]+$ ]] \
    || die "--accelerator-type '$1' is not one of v2-N, v3-N, v4-N, v5p-N, v5litepod-N, v6e-N"
}

# gcloud_target_flags: --zone (and --project) for every gcloud call, into the array TARGET.
gcloud_target_flags() {
  TARGET=("--zone=$ZONE")
  if [[ -n ${PROJECT:-} ]]; then TARGET+=("--project=$PROJECT"); fi
}

# Parse the flags every TPU script shares; sets NAME ZONE PROJECT DRY_RUN and returns how many
# arguments it consumed in PARSED (0 when $1 is not a common flag).
# shellcheck disable=SC2034  # PARSED, NAME, ZONE, PROJECT are read by the caller
parse_common_tpu_flag() {
  PARSED=0
  case $1 in
    --name) need_value "$@"; NAME=$2; PARSED=2 ;;
    --zone) need_value "$@"; ZONE=$2; PARSED=2 ;;
    --project) need_value "$@"; PROJECT=$2; PARSED=2 ;;
    --dry-run) DRY_RUN=1; PARSED=1 ;;
    -h | --help) usage; exit 0 ;;
  esac
}

# check_common_tpu: NAME and ZONE given (flags or CODERL_TPU_NAME / CODERL_TPU_ZONE) and valid.
check_common_tpu() {
  [[ -n ${NAME:-} ]] || die "--name is required (or set CODERL_TPU_NAME)"
  [[ -n ${ZONE:-} ]] || die "--zone is required (or set CODERL_TPU_ZONE)"
  check_name "$NAME"
  check_zone "$ZONE"
  check_project "${PROJECT:-}"
  gcloud_target_flags
}
