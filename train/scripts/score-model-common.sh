# Sourced (not run) by reward-model.sh and cost-model.sh: both score models train with the
# same safe-rlhf reference defaults (tools/cmd_train.cpp says which figures are confirmed and
# which are leads); each script adds only its subcommand. A flag given again wins.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
SCORE_MODEL_FLAGS=(
  --max_length 512
  --epochs 2
  --per_device_train_batch_size 16
  --per_device_eval_batch_size 16
  --gradient_accumulation_steps 1
  --loss_type sequence-wise
  --regularization 0.001
  --learning_rate 2e-5
  --lr_scheduler_type cosine
  --lr_warmup_ratio 0.03
  --weight_decay 0.1
  --max_grad_norm 1.0
  --seed 42
)
