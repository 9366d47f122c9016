#!/usr/bin/env bash
# PPO on the shaped score R - nu * C with a fixed nu (the paper's second
# baseline; it swept nu over {0.01, 0.5, 1, 2, 5, 10, 100}), with the defaults of the
# safe-rlhf reference script (docs/algorithm.md sections 5-6).
# Any flag can be overridden by giving it again: the last value wins.
#
#   train/scripts/ppo-shaping.sh --actor_model_name_or_path SFT_DIR \
#       --reward_model_name_or_path RM_DIR --cost_model_name_or_path CM_DIR \
#       --train_datasets PROMPTS[:proportion] [--ptx_datasets SFT_FILE[:proportion]] \
#       --output_dir RUN_DIR [more flags]
#
# The one critic starts from the RM unless --reward_critic_model_name_or_path says otherwise. The binary is $BEAVER, else build/beaver.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/rl-common.sh"
if [[ $# -eq 0 ]]; then
  echo "usage: $0 --actor_model_name_or_path DIR --reward_model_name_or_path DIR" \
       "--cost_model_name_or_path DIR --train_datasets FILE --output_dir DIR [flags]" >&2
  exit 2
fi
exec "$BEAVER" train ppo-shaping \
  "${RL_SHARED_FLAGS[@]}" \
  --shaping_nu 1.0 \
  --kl_coeff 0.02 \
  "$@"
