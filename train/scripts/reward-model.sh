#!/usr/bin/env bash
# Reward-model training (stage 2, helpfulness),
# with the defaults of the safe-rlhf reference script (tools/cmd_train.cpp says which
# figures are confirmed and which are leads). Any flag can be overridden by giving it again:
# the last value wins.
#
#   train/scripts/reward-model.sh --model_name_or_path MODEL_DIR --train_datasets FILE[:proportion] \
#       --output_dir RUN_DIR [--eval_datasets FILE | --eval_split_ratio 0.05] [more flags]
#
# The binary is $BEAVER, else build/beaver in this checkout.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/score-model-common.sh"
if [[ $# -eq 0 ]]; then
  echo "usage: $0 --model_name_or_path DIR --train_datasets FILE --output_dir DIR [flags]" >&2
  exit 2
fi
exec "$BEAVER" train rm "${SCORE_MODEL_FLAGS[@]}" "$@"
