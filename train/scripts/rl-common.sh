# Shared by ppo-lag.sh, ppo.sh and ppo-shaping.sh (sourced, not run): the safe-rlhf reference
# defaults common to all three RL stages (generation, epochs, optimizers, PPO clipping, GAE,
# PTX); common.sh finds the beaver binary. Each script adds its own algorithm's flags after
# these; a flag given again on the command line wins (the last value counts).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
RL_SHARED_FLAGS=(
  --max_length 512
  --temperature 1.0
  --top_p 1.0
  --repetition_penalty 1.0
  --num_return_sequences 1
  --epochs 1
  --update_iters 1
  --per_device_prompt_batch_size 16
  --per_device_train_batch_size 16
  --actor_lr 1e-5
  --actor_weight_decay 0.01
  --actor_lr_scheduler_type cosine
  --actor_lr_warmup_ratio 0.03
  --actor_gradient_checkpointing true
  --critic_lr 5e-6
  --critic_weight_decay 0.0
  --critic_lr_scheduler_type constant
  --critic_lr_warmup_ratio 0.03
  --critic_gradient_checkpointing true
  --adam_beta1 0.9
  --adam_beta2 0.95
  --adam_epsilon 1e-8
  --max_grad_norm 1.0
  --seed 42
  --clip_range_ratio 0.2
  --clip_range_score 50.0
  --clip_range_value 5.0
  --gamma 1.0
  --gae_lambda 0.95
  --ptx_coeff 16.0
)
