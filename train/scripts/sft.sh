#!/usr/bin/env bash
# Supervised fine-tuning (stage 1),
# with the defaults of the safe-rlhf reference script (tools/cmd_train.cpp says which
# figures are confirmed and which are leads). Any flag can be overridden by giving it again:
# the last value wins.
#
#   train/scripts/sft.sh --model_name_or_path MODEL_DIR --train_datasets FILE[:proportion] \
#       --output_dir RUN_DIR [--eval_datasets FILE | --eval_split_ratio 0.05] [more flags]
#
# The binary is $BEAVER, else build/beaver in this checkout.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if [[ $# -eq 0 ]]; then
  echo "usage: $0 --model_name_or_path DIR --train_datasets FILE --output_dir DIR [flags]" >&2
  exit 2
fi
exec "$BEAVER" train sft \
  --max_length 512 \
  --epochs 3 \
  --per_device_train_batch_size 4 \
  --per_device_eval_batch_size 4 \
  --gradient_accumulation_steps 8 \
  --learning_rate 2e-5 \
  --lr_scheduler_type cosine \
  --lr_warmup_ratio 0.03 \
  --weight_decay 0.0 \
  --max_grad_norm 1.0 \
  --seed 42 \
  "$@"
