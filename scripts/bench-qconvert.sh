#!/usr/bin/env bash
# qconvert throughput and peak memory: synthesises a ~1 GB f16 Llama HF directory in /tmp (once), then
# converts it to q4_0 with -t 2 three times under /usr/bin/time -v and prints each run's summary line,
# wall time and peak RSS, then the median. Usage: scripts/bench-qconvert.sh [BUILD_DIR] [THREADS]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$here/build}"
threads="${2:-2}"
py="$here/.venv/bin/python"
model=/tmp/qconvert-bench-f16
out=/tmp/qconvert-bench-q4_0.gguf
[ -x /usr/bin/time ] || { echo "bench-qconvert: /usr/bin/time missing (apt-get install -y time)" >&2; exit 1; }
if [ ! -f "$model/model.safetensors.index.json" ]; then
  # 10 layers of a 2048-wide Llama (d_ff 5632, 16 heads, 4 KV heads): 0.49 G weights = 0.99 GB f16, 3 shards.
  "$py" "$here/tests/python/make_tiny_hf_model.py" "$model" --hidden 2048 --layers 12 --heads 16 --kv-heads 4 \
    --ff 5632 --dtype f16 --shards 3
fi
du -sh "$model"
walls=()
for i in 1 2 3; do
  log=$(mktemp)
  /usr/bin/time -v "$build/bin/qconvert" "$model" -o "$out" --type q4_0 -t "$threads" --force 2> "$log" > /dev/null
  grep '^qconvert: source' "$log"
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
  wall=$(grep -o '[0-9.]* s (' "$log" | head -1 | cut -d' ' -f1)
  mbs=$(grep -o '([0-9]* MB/s)' "$log" | tr -dc '0-9')
  echo "run $i: ${wall} s, ${mbs} MB/s, peak RSS $((rss / 1024)) MiB"
  walls+=("$mbs $wall $rss")
  rm -f "$log"
done
printf '%s\n' "${walls[@]}" | sort -n | sed -n 2p | awk '{printf "median: %s MB/s of f16 input, %s s, peak RSS %d MiB\n", $1, $2, $3/1024}'
