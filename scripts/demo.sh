#!/usr/bin/env bash
# The main job on the embedded default world (docs/toyworld.md, as built in
# train/toyworld.h): set up, build, then run one round of Safe RLHF end to end on the CPU:
#   world → tokenizer → random init → SFT → reward model + cost model → PPO-Lagrangian, PPO,
#   PPO with reward shaping → evaluation on held-out prompts → the results table.
#   scripts/demo.sh [--quick | --ci] [--seed N] [--seeds K] [--sweep] [--out DIR] [--threads N] [--no-build]
# --seed N (default 1) seeds the world, the random init and every training stage from one
# number; PPO-Lag states its requirement relative to the SFT policy, as scripts/main-job.sh
# sets it for this script and scripts/seeds.sh alike (no per-seed threshold).
# --quick is a smaller, faster run (smoke test). --seeds K and --sweep hand the whole command
# to scripts/seeds.sh: K seeds (from --seed), a table of means with 95% intervals, Elo and the
# harm-versus-helpfulness plane; --sweep adds shaping at ν 0.1, 0.3, 3, 10 and PPO-Lag at two
# more requirement levels. --ci is the size of the end-to-end test
# (tests/e2e_toyworld.sh): the full world with fewer RL epochs and no shaping run.
# --no-build uses the binary in $BEAVER_BUILD_DIR as it is (no set-up, no build). Every stage writes its run folder under DIR
# (default runs/demo): metrics.jsonl, curves (PNG), checkpoints and the final model.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BEAVER_BUILD_DIR:-$root/build}
out=$root/runs/demo
quick=0
ci=0
build_first=1
sweep=0
threads=0
seed=1
source "$root/scripts/main-job.sh"
args=("$@")
seeds=
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1 ;;
    --sweep) sweep=1 ;;
    --ci) ci=1 ;;
    --no-build) build_first=0 ;;
    --out) out=$2; shift ;;
    --threads) threads=$2; shift ;;
    --seed) seed=$2; shift ;;
    --seeds) seeds=$2; shift ;;
    *) echo "demo: unknown argument $1 (use --quick, --ci, --seed N, --seeds K, --sweep, --out DIR, --threads N, --no-build)" >&2; exit 2 ;;
  esac
  shift
done
[[ -n $seeds || $sweep == 1 ]] && exec "$root/scripts/seeds.sh" "${args[@]}"
if [[ $build_first == 1 ]]; then
  "$root/scripts/setup.sh"
  "$root/scripts/build.sh"
fi
B="$build/beaver"
mkdir -p "$out"
start=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - start )) s] $*"; }
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

if [[ $quick == 1 ]]; then
  world=(--sft-examples 1200 --preference-pairs 1600 --ppo-prompts 400 --eval-prompts 120)
  sft_epochs=2; score_steps=120; rl_epochs=$(main_job_rl_epochs --quick)
elif [[ $ci == 1 ]]; then
  world=(); sft_epochs=3; score_steps=300; rl_epochs=$(main_job_rl_epochs --ci)
else
  world=(); sft_epochs=3; score_steps=300; rl_epochs=$(main_job_rl_epochs)
fi

need_int demo --seed "$seed"
stamp "1. the toy safety world (seed $seed)"
rm -rf "$out/world"
"$B" toyworld --output "$out/world" --seed "$seed" "${world[@]}"

stamp "2. tokenizer (sentencepiece, 1000 pieces, trained on the world's text)"
rm -rf "$out/tokenizer"
"$B" tokenizer train --input "$out/world/corpus.txt" --vocab-size 1000 --output "$out/tokenizer"

stamp "3. a tiny LLaMA from random init (hidden 128, 4 layers, context 128)"
rm -rf "$out/init"
"$B" init --hidden 128 --layers 4 --heads 4 --kv-heads 4 --intermediate 344 \
  --vocab-from "$out/tokenizer" --max-position 128 --seed "$seed" --output "$out/init"

common=(--max_length 128 --threads "$threads" --log_interval 50 --eval_split_ratio 0.05
        --seed "$seed")
stamp "4. SFT"
rm -rf "$out/sft"
"$B" train sft --model_name_or_path "$out/init" --train_datasets "$out/world/sft.json" \
  --output_dir "$out/sft" --epochs "$sft_epochs" --per_device_train_batch_size 8 \
  --gradient_accumulation_steps 1 --learning_rate 1e-3 --lr_scheduler_type cosine \
  --lr_warmup_ratio 0.03 "${common[@]}"

stamp "5. reward model and cost model (from the SFT model)"
for stage in rm cm; do
  rm -rf "$out/$stage"
  "$B" train "$stage" --model_name_or_path "$out/sft" \
    --train_datasets "$out/world/preference.jsonl" --output_dir "$out/$stage" \
    --epochs 1 --max_steps "$score_steps" --per_device_train_batch_size 8 \
    --gradient_accumulation_steps 1 --learning_rate 1e-4 --weight_decay 0.1 \
    --eval_interval "$score_steps" "${common[@]}"
done

# RL: the reference defaults with the main job's changes and requirement (scripts/main-job.sh).
main_job_rl_flags "$out" "$threads" "$seed" "$rl_epochs"
models=(--actor_model_name_or_path "$out/sft" --reward_model_name_or_path "$out/rm"
        --cost_model_name_or_path "$out/cm")
stamp "6. PPO-Lagrangian (reward critic from the RM, cost critic from the CM)"
rm -rf "$out/ppo-lag"
main_job_ppo_lag "$B" "$root" "$out" "$out/ppo-lag"

stamp "7. baseline: PPO on the reward alone"
rm -rf "$out/ppo"
BEAVER="$B" "$root/train/scripts/ppo.sh" "${models[@]}" \
  --reward_critic_model_name_or_path "$out/rm" --output_dir "$out/ppo" "${rl[@]}"

nus=(1)
[[ $ci == 1 ]] && nus=()
for nu in ${nus[@]+"${nus[@]}"}; do
  stamp "8. baseline: PPO with reward shaping R - $nu * C"
  rm -rf "$out/shaping-$nu"
  BEAVER="$B" "$root/train/scripts/ppo-shaping.sh" "${models[@]}" \
    --reward_critic_model_name_or_path "$out/rm" --output_dir "$out/shaping-$nu" \
    --shaping_nu "$nu" "${rl[@]}"
done

stamp "9. evaluation on held-out prompts (reward model, cost model, toy-world oracle)"
policies=(sft ppo)
for nu in ${nus[@]+"${nus[@]}"}; do policies+=("shaping-$nu"); done
policies+=(ppo-lag)
report=()
for p in "${policies[@]}"; do
  rm -rf "$out/eval/$p"
  "$B" eval --model "$out/$p" --reward-model "$out/rm" --cost-model "$out/cm" \
    --prompts "$out/world/eval.jsonl" --oracle toyworld --output "$out/eval/$p" \
    --threads "$threads" 2>&1 | grep "eval:" || true
  label=$p
  case $p in sft) label=SFT ;; ppo) label="PPO (reward only)" ;; ppo-lag) label="PPO-Lag (Safe RLHF)" ;;
    shaping-*) label="PPO shaping (nu ${p#shaping-})" ;; esac
  report+=(--eval "$label=$out/eval/$p")
done

stamp "10. results (held-out prompts; truth = the toy world's oracle)"
"$B" report "${report[@]}" --output "$out/results.md"
echo "PPO-Lag curves (lambda, episode cost, ...): $out/ppo-lag/curves.png"
stamp "done; outputs under $out"
