#!/usr/bin/env bash
# SFT throughput, one rank x 2 OpenMP threads against 2 MPI ranks x 1 thread, the same global
# batch, side by side in one run (issue 9's scale-out figure for a 2-core machine):
#   bench/scale_out_sft.sh [BUILD_DIR] [STEPS]      (defaults: build, 8)
# Makes a toy-world SFT set, a tokenizer and a small random LLaMA (hidden 128, 4 layers) in a
# temporary folder, runs `beaver train sft` both ways (--train_batch_size 8, max_length 128)
# and prints the tokens/s each run reports at its end and the ratio (2 ranks / 1 rank).
# The figures are wall-clock rates: on a shared machine they move with its load.
set -euo pipefail
build=${1:-build}
steps=${2:-8}
B=$(cd "$build" && pwd)/beaver
[[ -x "$B" ]] || { echo "scale_out_sft: no beaver binary in $build" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "scale_out_sft: mpirun not found (openmpi-bin)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
q() { "$@" >"$work/setup.log" 2>&1 || { cat "$work/setup.log" >&2; exit 1; }; }
q "$B" toyworld --output "$work/world" --seed 3 --sft-examples 400 --preference-pairs 20 \
  --ppo-prompts 10 --eval-prompts 10
q "$B" tokenizer train --input "$work/world/corpus.txt" --vocab-size 300 --output "$work/tok"
q "$B" init --hidden 128 --layers 4 --heads 4 --kv-heads 2 --intermediate 384 \
  --vocab-from "$work/tok" --max-position 128 --seed 5 --output "$work/init"
sft() {  # sft OUT THREADS [launcher...]
  local out=$1 threads=$2
  shift 2
  OMP_NUM_THREADS=$threads "$@" "$B" train sft --model_name_or_path "$work/init" \
    --train_datasets "$work/world/sft.json" --max_length 128 --epochs 1 --threads "$threads" \
    --train_batch_size 8 --gradient_accumulation_steps 1 --max_steps "$steps" \
    --output_dir "$work/$out" >"$work/$out.log" 2>&1 || { cat "$work/$out.log" >&2; exit 1; }
  grep -oE '\(([0-9]+) tokens/s\)' "$work/$out.log" | tail -1 | grep -oE '[0-9]+'
}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive
one=$(sft one 2)
two=$(sft two 1 mpirun --oversubscribe -np 2)
echo "SFT, global batch 8 x 128 tokens, $steps steps, load average $(cut -d' ' -f1-3 /proc/loadavg):"
echo "  1 rank  x 2 threads: $one tokens/s"
echo "  2 ranks x 1 thread : $two tokens/s"
awk -v a="$one" -v b="$two" 'BEGIN { printf "  ratio 2 ranks / 1 rank: %.2f\n", b / a }'
