#!/usr/bin/env bash
# PPO on the reward only (the Safe RLHF paper's first baseline), with the defaults of the
# safe-rlhf reference script (safe-rlhf.md sections 5-6).
# Any flag can be overridden by giving it again: the last value wins.
#
#   train/scripts/ppo.sh --actor_model_name_or_path SFT_DIR \
#       --reward_model_name_or_path RM_DIR [--cost_model_name_or_path CM_DIR (logged only)] \
#       --train_datasets PROMPTS[:proportion] [--ptx_datasets SFT_FILE[:proportion]] \
#       --output_dir RUN_DIR [more flags]
#
# The reward critic starts from the RM unless --reward_critic_model_name_or_path says
# otherwise. The binary is $BEAVER, else build/beaver.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BEAVER="${BEAVER:-$ROOT/build/beaver}"
if [[ ! -x "$BEAVER" ]]; then
  echo "ppo.sh: $BEAVER not found: build it (cmake --build build --target beaver) or set BEAVER" >&2
  exit 1
fi
if [[ $# -eq 0 ]]; then
  echo "usage: $0 --actor_model_name_or_path DIR --reward_model_name_or_path DIR" \
       "--train_datasets FILE --output_dir DIR [flags]" >&2
  exit 2
fi
exec "$BEAVER" train ppo \
  --max_length 512 \
  --temperature 1.0 \
  --top_p 1.0 \
  --repetition_penalty 1.0 \
  --num_return_sequences 1 \
  --epochs 1 \
  --update_iters 1 \
  --per_device_prompt_batch_size 16 \
  --per_device_train_batch_size 16 \
  --actor_lr 1e-5 \
  --actor_weight_decay 0.01 \
  --actor_lr_scheduler_type cosine \
  --actor_lr_warmup_ratio 0.03 \
  --actor_gradient_checkpointing true \
  --critic_lr 5e-6 \
  --critic_weight_decay 0.0 \
  --critic_lr_scheduler_type constant \
  --critic_lr_warmup_ratio 0.03 \
  --critic_gradient_checkpointing true \
  --adam_beta1 0.9 \
  --adam_beta2 0.95 \
  --adam_epsilon 1e-8 \
  --max_grad_norm 1.0 \
  --seed 42 \
  --kl_coeff 0.02 \
  --clip_range_ratio 0.2 \
  --clip_range_score 50.0 \
  --clip_range_value 5.0 \
  --gamma 1.0 \
  --gae_lambda 0.95 \
  --ptx_coeff 16.0 \
  "$@"
