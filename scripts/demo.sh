#!/usr/bin/env bash
# The main job on the embedded default world (../shared/design/toyworld.md as built in
# train/toyworld.h): set up, build, then run one round of Safe RLHF end to end on the CPU:
#   world → tokenizer → random init → SFT → reward model + cost model → PPO-Lagrangian, PPO,
#   PPO with reward shaping → evaluation on held-out prompts → the results table.
#   scripts/demo.sh [--quick] [--out DIR] [--threads N]
# --quick is a smaller, faster run (smoke test). Every stage writes its run folder under DIR
# (default runs/demo): metrics.jsonl, curves (PNG), checkpoints and the final model.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BEAVER_BUILD_DIR:-$root/build}
out=$root/runs/demo
quick=0
threads=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1 ;;
    --out) out=$2; shift ;;
    --threads) threads=$2; shift ;;
    *) echo "demo: unknown argument $1 (use --quick, --out DIR, --threads N)" >&2; exit 2 ;;
  esac
  shift
done
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
B="$build/beaver"
mkdir -p "$out"
start=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - start )) s] $*"; }
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

if [[ $quick == 1 ]]; then
  world=(--sft-examples 1200 --preference-pairs 1600 --ppo-prompts 400 --eval-prompts 120)
  sft_epochs=2; score_steps=120
else
  world=(); sft_epochs=3; score_steps=300
fi

stamp "1. the toy safety world (seed 1)"
"$B" toyworld --output "$out/world" --seed 1 "${world[@]}"

stamp "2. tokenizer (sentencepiece, 1000 pieces, trained on the world's text)"
"$B" tokenizer train --input "$out/world/corpus.txt" --vocab-size 1000 --output "$out/tokenizer"

stamp "3. a tiny LLaMA from random init (hidden 128, 4 layers, context 128)"
rm -rf "$out/init"
"$B" init --hidden 128 --layers 4 --heads 4 --kv-heads 4 --intermediate 344 \
  --vocab-from "$out/tokenizer" --max-position 128 --seed 1 --output "$out/init"

common=(--max_length 128 --threads "$threads" --log_interval 50 --eval_split_ratio 0.05)
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

stamp "done; outputs under $out"
