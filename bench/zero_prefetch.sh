#!/usr/bin/env bash
# Stage-3 SFT throughput on 2 MPI ranks with the next unit's all-gather prefetched (the
# default) against blocking gathers (BEAVER_ZERO_PREFETCH=0), side by side in one run, each
# way run twice in alternation (on, off, on, off) so that a change of the machine's load
# falls on both:
#   bench/zero_prefetch.sh [BUILD_DIR] [STEPS]      (defaults: build, 8)
# Makes a toy-world SFT set, a tokenizer and a small random LLaMA (hidden 128, 4 layers) in a
# temporary folder, runs `mpirun -np 2 beaver train sft --zero_stage 3` (--train_batch_size 8,
# max_length 128, one OpenMP thread per rank) and prints the tokens/s each run reports at its
# end, the load average before each, and the ratio of the means (prefetch / blocking). On the
# CPU the gathers are MPI_Iallgatherv over loopback: OpenMPI progresses them inside MPI calls
# only, so little overlap is expected there; the figure that matters is NCCL's on GPUs.
set -euo pipefail
source "$(dirname "$0")/sft_toy_setup.sh" zero_prefetch "$@"
sft() {  # sft OUT PREFETCH(0|1)
  local out=$1
  BEAVER_ZERO_PREFETCH=$2 OMP_NUM_THREADS=1 mpirun --oversubscribe -np 2 "$B" train sft \
    "${sft_flags[@]}" --threads 1 --zero_stage 3 --output_dir "$work/$out" >"$work/$out.log" 2>&1 ||
    { cat "$work/$out.log" >&2; exit 1; }
  tokens_per_s "$work/$out.log"
}
on() { sft "$1" 1; }
off() { sft "$1" 0; }
echo "stage-3 SFT on 2 ranks x 1 thread, global batch 8 x 128 tokens, $steps steps:"
side_by_side "prefetch on" on "prefetch off" off tokens/s
