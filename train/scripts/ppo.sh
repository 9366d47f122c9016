#!/usr/bin/env bash
# PPO on the reward only (the Safe RLHF paper's first baseline), with the defaults of the
# safe-rlhf reference script (docs/algorithm.md sections 5-6).
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
source "$(dirname "${BASH_SOURCE[0]}")/rl-common.sh"
if [[ $# -eq 0 ]]; then
  echo "usage: $0 --actor_model_name_or_path DIR --reward_model_name_or_path DIR" \
       "--train_datasets FILE --output_dir DIR [flags]" >&2
  exit 2
fi
exec "$BEAVER" train ppo \
  "${RL_SHARED_FLAGS[@]}" \
  --kl_coeff 0.02 \
  "$@"
