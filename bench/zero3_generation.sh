#!/usr/bin/env bash
# Stage-3 PPO-Lagrangian on 2 MPI ranks: the RL step's generation time with generation from
# the sharded actor unit by unit (--zero3_generation sharded, the default) against a full
# actor copy gathered once per rollout (--zero3_generation gathered), side by side in one run,
# each way run twice in alternation (sharded, gathered, sharded, gathered) so that a change of
# the machine's load falls on both:
#   bench/zero3_generation.sh [BUILD_DIR] [STEPS]      (defaults: build, 8)
# Makes the toy world, tokenizer and small random LLaMA of bench/sft_toy_setup.sh (hidden 128,
# 4 layers), a reward and a cost model from it (3 steps each), then runs `mpirun -np 2 beaver
# train ppo-lag --zero_stage 3` for STEPS RL steps (4 prompts per rank per step, max_length
# 128, one OpenMP thread per rank) and prints each run's mean generation seconds per RL step
# (metrics.jsonl's generation_s, rank mean; the gathered mode's copy gather included), the load
# average before each, and the ratio of the means (sharded / gathered). The final actors of
# the two modes must be identical bytes (the same tokens, then the same passes).
set -euo pipefail
source "$(dirname "$0")/sft_toy_setup.sh" zero3_generation "$@"
for stage in rm cm; do
  q "$B" train "$stage" --model_name_or_path "$work/init" --train_datasets \
    "$work/world/preference.jsonl" --max_length 128 --epochs 1 --train_batch_size 4 \
    --gradient_accumulation_steps 1 --max_steps 3 --threads 1 --output_dir "$work/$stage"
done
ppo() {  # ppo OUT MODE: prints the mean generation_s per RL step
  local out=$1
  OMP_NUM_THREADS=1 mpirun --oversubscribe -np 2 "$B" train ppo-lag \
    --actor_model_name_or_path "$work/init" --reward_model_name_or_path "$work/rm" \
    --cost_model_name_or_path "$work/cm" --train_datasets "$work/world/prompts.jsonl" \
    --max_length 128 --threads 1 --per_device_prompt_batch_size 4 \
    --per_device_train_batch_size 4 --epochs 100 --max_steps "$steps" --zero_stage 3 \
    --zero3_generation "$2" --output_dir "$work/$out" >"$work/$out.log" 2>&1 ||
    { cat "$work/$out.log" >&2; exit 1; }
  grep -oE '"generation_s": *[0-9.eE+-]+' "$work/$out/metrics.jsonl" |
    awk -F: '{ s += $2; n++ } END { printf "%.4f\n", s / n }'
}
sharded() { ppo "$1" sharded; }
gathered() { ppo "$1" gathered; }
echo "stage-3 PPO-Lagrangian on 2 ranks x 1 thread, 8 prompts per RL step, max_length 128," \
  "$steps steps; generation seconds per RL step:"
side_by_side sharded sharded gathered gathered s
