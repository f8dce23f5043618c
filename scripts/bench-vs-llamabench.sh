#!/usr/bin/env bash
# Superseded by bench/vs-llamacpp.sh, which runs `qbench -m` (llama-bench's own tests through the
# engine API) instead of timing qrun, and adds the decode roofline. Kept so that old command lines work:
#
#   scripts/bench-vs-llamabench.sh FILE.gguf... [--runs 3] [--threads 2] [--pp 512] [--tg 128]
#
# runs bench/vs-llamacpp.sh FILE.gguf... --rounds 3 --threads 2 --pp 512 --tg 128.
set -euo pipefail
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) args+=(--rounds "$2"); shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done
exec "$(dirname "$0")/../bench/vs-llamacpp.sh" "${args[@]}"
