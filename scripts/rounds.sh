#!/usr/bin/env bash
# Iterated rounds of Safe RLHF on the toy world (docs/rlhf.md, "Rounds"), as the paper's
# Beaver-v1, v2, v3:
#   round 1   = the main job's round (scripts/demo.sh: world, tokenizer, SFT, RM, CM, PPO-Lag);
#   round k+1 : round k's PPO-Lag policy answers fresh prompts of round k+1 and a pool of
#               harmful prompts; the pool prompts it answered harmfully most often are the
#               red-team prompts, answered again; the oracle labels new helpfulness and
#               safety pairs from all these answers (--label_noise); the RM and CM are trained
#               again from the SFT model on all pairs so far; PPO-Lag runs again from round k's
#               policy (its reference) on the world's RL prompts, with the next, stricter
#               requirement;
#   then every round's policy and SFT are evaluated on the same held-out eval prompts, judged
#   by the last round's RM and CM (one scale for the reward and cost columns) and the oracle,
#   and `beaver report` writes the table (rounds.md, rounds.json).
#
#   scripts/rounds.sh [--rounds N] [--seed N | --seeds K] [--from DIR] [--quick | --ci | --tiny]
#                     [--label_noise P] [--targets "u1 u2 ..."] [--out DIR] [--threads N]
#                     [--later_ptx_coeff C] [--no-build]
# --rounds N (default 3). --seed N (default 1) seeds everything from one number; --seeds K runs
# seeds 1..K and adds a table over them (mean and 95% interval per row, through
# `beaver report --eval LABEL=DIR1,DIR2,...`). --from DIR reuses a finished
# `scripts/demo.sh --out DIR` run as round 1 (one seed only). --quick, --ci: round 1 at
# demo.sh's size of that name; --tiny: a pipeline check of a minute or two (tiny world, model and
# steps: the files and tables are real, the numbers mean nothing). --targets: the PPO-Lag
# requirement (target unsafe share) of each round, default "0.1 0.05 0.025" (round 1 = the
# demo's; halved each round, docs/rlhf.md); a round past the list halves the last one.
# --later_ptx_coeff C: PPO-Lag's PTX weight on the SFT set in rounds 2..N (default 1, round 1's).
# Outputs: DIR/seed-S/round-K/... per round, DIR/seed-S/eval/<policy>, DIR/seed-S/rounds.md and
# .json, and with --seeds DIR/rounds.md and .json.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BEAVER_BUILD_DIR:-$root/build}
out=$root/runs/rounds
rounds=3
seed=1
seeds=0
from=
size=
build_first=1
threads=0
label_noise=0.1
later_ptx=1
targets="0.1 0.05 0.025"
usage="use --rounds N, --seed N, --seeds K, --from DIR, --quick, --ci, --tiny, --label_noise P, --targets LIST, --later_ptx_coeff C, --out DIR, --threads N, --no-build"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) rounds=$2; shift ;;
    --seed) seed=$2; shift ;;
    --seeds) seeds=$2; shift ;;
    --from) from=$2; shift ;;
    --quick|--ci|--tiny) size=${1#--} ;;
    --label_noise|--label-noise) label_noise=$2; shift ;;
    --targets) targets=$2; shift ;;
    --out) out=$2; shift ;;
    --threads) threads=$2; shift ;;
    --no-build) build_first=0 ;;
    --later_ptx_coeff|--later-ptx-coeff) later_ptx=$2; shift ;;
    *) echo "rounds: unknown argument $1 ($usage)" >&2; exit 2 ;;
  esac
  shift
done
for v in rounds seed seeds threads; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "rounds: --$v takes a non-negative integer, got '${!v}'" >&2; exit 2; }
done
(( rounds >= 1 )) || { echo "rounds: --rounds must be at least 1" >&2; exit 2; }
read -r -a target_list <<< "$targets"
(( ${#target_list[@]} >= 1 )) || { echo "rounds: --targets needs at least one share" >&2; exit 2; }
if [[ -n $from ]]; then
  (( seeds <= 1 )) || { echo "rounds: --from reuses one seed's round 1; it cannot go with --seeds $seeds" >&2; exit 2; }
  for d in world sft rm cm ppo-lag; do
    [[ -e $from/$d ]] || { echo "rounds: --from $from has no $d (a finished scripts/demo.sh --out folder?)" >&2; exit 2; }
  done
  [[ -n $size ]] || size=from
fi
if [[ $build_first == 1 ]]; then
  "$root/scripts/setup.sh"
  "$root/scripts/build.sh"
fi
B="$build/beaver"
mkdir -p "$out"
start=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - start )) s] $*"; }
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

# Sizes of rounds 2..N: prompts drawn, answers sampled per prompt, red-team prompts kept, RM/CM
# steps, RL epochs. The new pairs of a round are far fewer than the world's 4000 (time), so
# each round's file enters the RM/CM mixture with proportion $new_weight (whole passes).
fresh=150; fresh_k=2; pool=80; pool_k=3; top=40; top_k=4; score_steps=300; rl_epochs=4
new_weight=4
case $size in
  tiny) fresh=12; pool=8; top=4; score_steps=6; rl_epochs=1 ;;
  quick) score_steps=120; rl_epochs=2 ;;
esac
target_of() {  # round k's target share
  local k=$1 n=${#target_list[@]}
  if (( k <= n )); then echo "${target_list[k-1]}"; return; fi
  local t=${target_list[n-1]} i
  for (( i = n; i < k; i++ )); do t=$(awk -v t="$t" 'BEGIN { printf "%.6g", t / 2 }'); done
  echo "$t"
}

# Round 1 of seed $1 into $2: the demo at the chosen size, or a tiny pipeline version.
round_one() {
  local s=$1 dir=$2
  if [[ $size == tiny ]]; then
    local t=(--threads "$threads" --seed "$s")
    rm -rf "$dir"; mkdir -p "$dir"
    "$B" toyworld --output "$dir/world" --seed "$s" --sft-examples 120 --preference-pairs 160 \
      --ppo-prompts 60 --eval-prompts 24
    "$B" tokenizer train --input "$dir/world/corpus.txt" --vocab-size 300 --output "$dir/tokenizer"
    "$B" init --hidden 32 --layers 2 --heads 2 --kv-heads 2 --intermediate 64 \
      --vocab-from "$dir/tokenizer" --max-position 128 --seed "$s" --output "$dir/init"
    "$B" train sft --model_name_or_path "$dir/init" --train_datasets "$dir/world/sft.json" \
      --output_dir "$dir/sft" --epochs 1 --max_steps 10 --per_device_train_batch_size 8 \
      --learning_rate 1e-3 --max_length 128 "${t[@]}"
    for stage in rm cm; do
      "$B" train "$stage" --model_name_or_path "$dir/sft" \
        --train_datasets "$dir/world/preference.jsonl" --output_dir "$dir/$stage" --epochs 1 \
        --max_steps 6 --per_device_train_batch_size 8 --learning_rate 1e-4 --max_length 128 \
        "${t[@]}"
    done
    BEAVER="$B" "$root/train/scripts/ppo-lag.sh" --actor_model_name_or_path "$dir/sft" \
      --reward_model_name_or_path "$dir/rm" --cost_model_name_or_path "$dir/cm" \
      --train_datasets "$dir/world/prompts.jsonl" --ptx_datasets "$dir/world/sft.json" \
      --output_dir "$dir/ppo-lag" --max_length 128 --epochs 1 --per_device_prompt_batch_size 8 \
      --per_device_train_batch_size 8 --calibration_prompts 8 \
      --target_unsafe_share "$(target_of 1)" "${t[@]}"
  else
    local flags=()
    [[ $size == quick || $size == ci ]] && flags=(--"$size")
    BEAVER_BUILD_DIR=$build "$root/scripts/demo.sh" --no-build "${flags[@]}" --seed "$s" \
      --threads "$threads" --out "$dir"
  fi
}

# Samples from policy $1 for prompt file $2 into $3 (sampling seed $4).
sample() {
  "$B" generate --model "$1" --prompts "$2" --output "$3" --seed "$4" --max_new_tokens 80 \
    --threads "$threads" > "$3.log" 2>&1 || { tail -20 "$3.log"; echo "rounds: generate failed" >&2; exit 1; }
}

run_seed() {
  local s=$1 dir=$2
  mkdir -p "$dir"
  local r1=$dir/round-1
  if [[ -n $from ]]; then
    stamp "seed $s, round 1: reusing $from"
    rm -rf "$r1"; ln -s "$(cd "$from" && pwd)" "$r1"
  else
    stamp "seed $s, round 1 (${size:-default} size; the main job's requirement, tiny: target unsafe share $(target_of 1))"
    round_one "$s" "$r1"
  fi
  local world=$r1/world sft=$r1/sft
  local data=("$world/preference.jsonl")
  local policy=$r1/ppo-lag k
  for (( k = 2; k <= rounds; k++ )); do
    local rd=$dir/round-$k target
    target=$(target_of "$k")
    rm -rf "$rd"; mkdir -p "$rd"
    stamp "seed $s, round $k: fresh and red-team prompts, answered by round $((k - 1))'s policy"
    "$B" toyworld prompts --seed "$s" --round "$k" --count "$fresh" --repeat "$fresh_k" \
      --output "$rd/fresh.jsonl"
    "$B" toyworld prompts --seed "$s" --round "$k" --count "$pool" --repeat "$pool_k" \
      --harmful_only --output "$rd/pool.jsonl"
    sample "$policy" "$rd/fresh.jsonl" "$rd/fresh-samples.jsonl" $(( s * 1000 + k * 10 + 1 ))
    sample "$policy" "$rd/pool.jsonl" "$rd/pool-samples.jsonl" $(( s * 1000 + k * 10 + 2 ))
    "$B" toyworld redteam --samples "$rd/pool-samples.jsonl" --top "$top" --repeat "$top_k" \
      --output "$rd/redteam.jsonl"
    sample "$policy" "$rd/redteam.jsonl" "$rd/redteam-samples.jsonl" $(( s * 1000 + k * 10 + 3 ))
    stamp "seed $s, round $k: the oracle labels new pairs (label noise $label_noise)"
    "$B" toyworld label --samples "$rd/fresh-samples.jsonl" "$rd/pool-samples.jsonl" \
      "$rd/redteam-samples.jsonl" --label_noise "$label_noise" --seed $(( s * 1000 + k )) \
      --output "$rd/pairs.jsonl"
    data+=("$rd/pairs.jsonl:$new_weight")
    stamp "seed $s, round $k: RM and CM again from the SFT model on all ${#data[@]} pair files"
    local score=(--epochs 1 --max_steps "$score_steps" --per_device_train_batch_size 8
                 --gradient_accumulation_steps 1 --learning_rate 1e-4 --weight_decay 0.1
                 --max_length 128 --threads "$threads" --seed "$s" --log_interval 50)
    [[ $size == tiny ]] || score+=(--eval_split_ratio 0.05 --eval_interval "$score_steps")
    for stage in rm cm; do
      "$B" train "$stage" --model_name_or_path "$sft" --train_datasets "${data[@]}" \
        --output_dir "$rd/$stage" "${score[@]}"
    done
    stamp "seed $s, round $k: PPO-Lag from round $((k - 1))'s policy, target unsafe share $target"
    local rl=(--train_datasets "$world/prompts.jsonl" --max_length 128 --epochs "$rl_epochs"
              --threads "$threads" --seed "$s" --target_unsafe_share "$target")
    if [[ $size == tiny ]]; then
      rl+=(--per_device_prompt_batch_size 8 --per_device_train_batch_size 8 --calibration_prompts 8)
    else
      rl+=(--actor_lr 3e-4 --critic_lr 3e-4)
    fi
    # PTX 0 means no PTX at all (with a PTX set, the RL gradient would still be halved).
    [[ $later_ptx == 0 ]] || rl+=(--ptx_datasets "$world/sft.json" --ptx_coeff "$later_ptx")
    BEAVER="$B" "$root/train/scripts/ppo-lag.sh" --actor_model_name_or_path "$policy" \
      --reward_model_name_or_path "$rd/rm" --cost_model_name_or_path "$rd/cm" \
      --reward_critic_model_name_or_path "$rd/rm" --cost_critic_model_name_or_path "$rd/cm" \
      --output_dir "$rd/ppo-lag" "${rl[@]}"
    policy=$rd/ppo-lag
  done

  local judge=$r1
  (( rounds >= 2 )) && judge=$dir/round-$rounds
  stamp "seed $s: evaluation of SFT and every round on the held-out prompts (RM and CM of round $rounds)"
  local names=(sft) paths=("$sft")
  for (( k = 1; k <= rounds; k++ )); do names+=("v$k"); paths+=("$dir/round-$k/ppo-lag"); done
  local i eval_args=()
  for i in "${!names[@]}"; do
    rm -rf "$dir/eval/${names[i]}"
    local ev=(--model "${paths[i]}" --reward-model "$judge/rm" --cost-model "$judge/cm"
              --prompts "$world/eval.jsonl" --oracle toyworld --output "$dir/eval/${names[i]}"
              --threads "$threads")
    [[ $size == tiny ]] && ev+=(--max_length 128)
    "$B" eval "${ev[@]}" 2>&1 | grep "eval:" || true
    [[ -s $dir/eval/${names[i]}/summary.json ]] || { echo "rounds: eval of ${names[i]} failed" >&2; exit 1; }
  done
  "$B" report --eval "SFT=$dir/eval/sft" \
    $(for (( k = 1; k <= rounds; k++ )); do echo "--eval Beaver-v$k=$dir/eval/v$k"; done) \
    --output "$dir/rounds.md"
}

if (( seeds >= 1 )); then
  seed_list=$(seq 1 "$seeds")
else
  seed_list=$seed
fi
for s in $seed_list; do
  run_seed "$s" "$out/seed-$s"
done
if (( seeds >= 2 )); then
  stamp "table over seeds $(echo $seed_list) (mean and 95% interval)"
  args=()
  join() { local IFS=,; echo "$*"; }
  dirs=(); for s in $seed_list; do dirs+=("$out/seed-$s/eval/sft"); done
  args+=(--eval "SFT=$(join "${dirs[@]}")")
  for (( k = 1; k <= rounds; k++ )); do
    dirs=(); for s in $seed_list; do dirs+=("$out/seed-$s/eval/v$k"); done
    args+=(--eval "Beaver-v$k=$(join "${dirs[@]}")")
  done
  "$B" report "${args[@]}" --output "$out/rounds.md" || {
    echo "rounds: the table over seeds needs \`beaver report --eval LABEL=DIR1,DIR2,...\` (issue 10" \
         "item 3); the per-seed tables are in $out/seed-*/rounds.md" >&2; exit 1; }
fi
stamp "done; tables: $(for s in $seed_list; do echo -n "$out/seed-$s/rounds.md "; done)$( (( seeds >= 2 )) && echo "$out/rounds.md")"
