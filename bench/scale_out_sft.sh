#!/usr/bin/env bash
# SFT throughput, one rank x 2 OpenMP threads against 2 MPI ranks x 1 thread, the same global
# batch, side by side in one run (issue 9's scale-out figure for a 2-core machine):
#   bench/scale_out_sft.sh [BUILD_DIR] [STEPS]      (defaults: build, 8)
# Makes a toy-world SFT set, a tokenizer and a small random LLaMA (hidden 128, 4 layers) in a
# temporary folder, runs `beaver train sft` both ways (--train_batch_size 8, max_length 128)
# and prints the tokens/s each run reports at its end and the ratio (2 ranks / 1 rank).
# The figures are wall-clock rates: on a shared machine they move with its load.
set -euo pipefail
source "$(dirname "$0")/sft_toy_setup.sh" scale_out_sft "$@"
sft() {  # sft OUT THREADS [launcher...]
  local out=$1 threads=$2
  shift 2
  OMP_NUM_THREADS=$threads "$@" "$B" train sft "${sft_flags[@]}" --threads "$threads" \
    --output_dir "$work/$out" >"$work/$out.log" 2>&1 || { cat "$work/$out.log" >&2; exit 1; }
  tokens_per_s "$work/$out.log"
}
one=$(sft one 2)
two=$(sft two 1 mpirun --oversubscribe -np 2)
echo "SFT, global batch 8 x 128 tokens, $steps steps, load average $(cut -d' ' -f1-3 /proc/loadavg):"
echo "  1 rank  x 2 threads: $one tokens/s"
echo "  2 ranks x 1 thread : $two tokens/s"
awk -v a="$one" -v b="$two" 'BEGIN { printf "  ratio 2 ranks / 1 rank: %.2f\n", b / a }'
