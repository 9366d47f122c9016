#!/usr/bin/env bash
# PPO-Lagrangian (Safe RLHF, stage 4) with the defaults of the safe-rlhf reference script
# (docs/algorithm.md section 5). Any flag can be overridden by giving it again: the last value wins.
#
#   train/scripts/ppo-lag.sh --actor_model_name_or_path SFT_DIR \
#       --reward_model_name_or_path RM_DIR --cost_model_name_or_path CM_DIR \
#       --train_datasets PROMPTS[:proportion] [--ptx_datasets SFT_FILE[:proportion]] \
#       --output_dir RUN_DIR [more flags]
#
# The critics start from the RM and CM unless --reward_critic_model_name_or_path /
# --cost_critic_model_name_or_path say otherwise. The binary is $BEAVER, else build/beaver.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/rl-common.sh"
if [[ $# -eq 0 ]]; then
  echo "usage: $0 --actor_model_name_or_path DIR --reward_model_name_or_path DIR" \
       "--cost_model_name_or_path DIR --train_datasets FILE --output_dir DIR [flags]" >&2
  exit 2
fi
exec "$BEAVER" train ppo-lag \
  "${RL_SHARED_FLAGS[@]}" \
  --threshold 0.0 \
  --lambda_init 1.0 \
  --lambda_lr 0.1 \
  --lambda_max 5.0 \
  --lambda_update_delay_steps 0 \
  --episode_cost_window_size 128 \
  --kl_coeff 0.01 \
  "$@"
