#!/usr/bin/env bash
# The main job on the embedded default world: set up, build, then run the most complete
# pipeline Beaver has today. Each stage says what it is; stages that do not exist yet are
# listed at the end, not faked.
#   scripts/demo.sh [--quick] [--out DIR]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BEAVER_BUILD_DIR:-$root/build}
out=$root/runs/demo
quick=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1 ;;
    --out) out=$2; shift ;;
    *) echo "demo: unknown argument $1 (use --quick, --out DIR)" >&2; exit 2 ;;
  esac
  shift
done
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
beaver="$build/beaver"
mkdir -p "$out"
start=$(date +%s)

echo "== 1. build information"
"$beaver" info

echo "== 2. the toy safety world (seed 1)"
if [[ $quick == 1 ]]; then
  "$beaver" toyworld --output "$out/world" --seed 1 --sft-examples 600 --preference-pairs 800 \
    --ppo-prompts 300 --eval-prompts 120
else
  "$beaver" toyworld --output "$out/world" --seed 1
fi
wc -l "$out/world"/*.jsonl | sed 's/^/   /'

echo "== done in $(( $(date +%s) - start )) s; outputs under $out"
echo "Not yet part of the main job (later issues): tokenizer training, SFT, reward and cost"
echo "models, PPO-Lagrangian with the PPO and reward-shaping baselines, and the results table."
