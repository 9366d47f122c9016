#!/usr/bin/env bash
# Iterated rounds of Safe RLHF on the toy world (docs/rlhf.md, "Rounds"), as the paper's
# Beaver-v1, v2, v3:
#   round 1   = the main job's round (scripts/demo.sh: world, tokenizer, SFT, RM, CM, PPO-Lag);
#   round k+1 : round k's PPO-Lag policy answers fresh prompts of round k+1 and a pool of
#               harmful prompts; the pool prompts it answered harmfully most often are the
#               red-team prompts, answered again; the oracle labels new helpfulness and
#               safety pairs from all these answers (--label_noise); the last round's RM is
#               trained further on this round's pairs, the CM again from the SFT model on all
#               pairs so far; PPO-Lag
#               runs again from round k's policy (its reference) on the world's RL prompts,
#               its requirement a ratio of ITS OWN starting policy's unsafe share
#               (--later_ratio), so that it tightens as the policy improves;
#   then every round's policy and SFT are evaluated on the same held-out eval prompts, judged
#   by the last round's RM and CM (one scale for the reward and cost columns) and the oracle,
#   and `beaver report` writes the table (rounds.md, rounds.json), with the requirement of
#   every round beside it (requirements.md).
#
#   scripts/rounds.sh [--rounds N] [--seed N | --seeds K] [--from DIR] [--quick | --ci | --tiny]
#                     [--label_noise P] [--later_ratio R] [--later_window W]
#                     [--later_confidence Z] [--later_lambda_max L] [--later_epochs E]
#                     [--later_ptx_coeff C] [--later_ptx_data sft|preferred]
#                     [--later_kl_coeff B] [--later_actor_lr LR] [--fresh_prompts N]
#                     [--cm_round_weight W] [--rm_pairs fresh|all] [--rm_init previous|sft]
#                     [--rm_old_weight W] [--eval_prompts N] [--out DIR] [--threads N]
#                     [--no-build]
# --rounds N (default 3). --seed N (default 1) seeds everything from one number; --seeds K runs
# seeds 1..K and adds a table over them (mean and 95% interval per row, through
# `beaver report --eval LABEL=DIR1,DIR2,...`). --from DIR reuses a finished
# `scripts/demo.sh --out DIR` run as round 1 (one seed only). --quick, --ci: round 1 at
# demo.sh's size of that name; --tiny: a pipeline check of a minute or two (tiny world, model and
# steps: the files and tables are real, the numbers mean nothing; its round 1 uses the demo's
# ratio 0.4).
# Rounds 2..N (docs/rlhf.md, "Rounds", for why each default):
#   --later_ratio R (0.5): PPO-Lag's requirement, at most R times the unsafe share of the
#       round's own starting policy (--target_unsafe_ratio);
#   --later_window W (128) and --later_confidence Z (0): λ follows the plain mean cost of the
#       last W responses (the reference's window, no margin);
#   --later_lambda_max L (2): λ's cap; --later_epochs E (2; tiny 1): RL epochs;
#   --later_ptx_coeff C (0): PTX weight (0: no PTX set at all);
#   --later_ptx_data sft|preferred (sft): the PTX set, the SFT set or, per labelled pair so
#       far, its preferred answer if labelled safe, else the other one if safe (else none);
#   --later_kl_coeff B (0.01, the reference's): KL coefficient to the round's starting policy;
#   --later_actor_lr LR (3e-4, round 1's; not at --tiny): the actor's learning rate;
#   --fresh_prompts N (150; tiny 12): fresh prompts drawn per round (2 answers each);
#   --cm_round_weight W (4): the proportion of each round's pairs in the CM's mixture;
#   --rm_pairs fresh|all (fresh): the RM's pairs, this round's only or all so far (the CM
#       always takes all so far, from the SFT model);
#   --rm_init previous|sft (previous): the RM continues from the last round's RM, or starts
#       again from the SFT model;
#   --rm_old_weight W (0): with W > 0 the RM takes this round's pairs plus every earlier pair
#       file (the world's set and earlier rounds') at proportion W (instead of --rm_pairs);
#   --eval_prompts N (0): 0 evaluates on the world's own held-out eval.jsonl (4800 prompts in
#       the default world); N > 0 writes the same world again with N eval prompts (its other
#       files checked byte-identical) and evaluates on those.
# Outputs: DIR/seed-S/round-K/... per round, DIR/seed-S/eval/<policy>, DIR/seed-S/rounds.md and
# .json, DIR/seed-S/requirements.md, DIR/seed-S/steps.md and .json (each round against the
# round before, paired), and with --seeds DIR/rounds.md, requirements.md and steps.md over the
# seeds.
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
first_ratio=0.4  # tiny's own round 1: the demo's requirement
later_ratio=0.5
later_window=128
later_confidence=0
later_lambda_max=2
later_epochs=
later_ptx=0
later_ptx_data=sft
rm_pairs=fresh
rm_init=previous
later_kl=0.01
later_actor_lr=3e-4
fresh=
cm_round_weight=4
rm_old_weight=0
eval_prompts=0
usage="use --rounds N, --seed N, --seeds K, --from DIR, --quick, --ci, --tiny, --label_noise P, --later_ratio R, --later_window W, --later_confidence Z, --later_lambda_max L, --later_epochs E, --later_ptx_coeff C, --later_ptx_data sft|preferred, --later_kl_coeff B, --later_actor_lr LR, --fresh_prompts N, --cm_round_weight W, --rm_pairs fresh|all, --rm_init previous|sft, --rm_old_weight W, --eval_prompts N, --out DIR, --threads N, --no-build"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) rounds=$2; shift ;;
    --seed) seed=$2; shift ;;
    --seeds) seeds=$2; shift ;;
    --from) from=$2; shift ;;
    --quick|--ci|--tiny) size=${1#--} ;;
    --label_noise|--label-noise) label_noise=$2; shift ;;
    --later_ratio|--later-ratio) later_ratio=$2; shift ;;
    --later_window|--later-window) later_window=$2; shift ;;
    --later_confidence|--later-confidence) later_confidence=$2; shift ;;
    --later_lambda_max|--later-lambda-max) later_lambda_max=$2; shift ;;
    --later_epochs|--later-epochs) later_epochs=$2; shift ;;
    --rm_pairs|--rm-pairs) rm_pairs=$2; shift ;;
    --rm_init|--rm-init) rm_init=$2; shift ;;
    --out) out=$2; shift ;;
    --threads) threads=$2; shift ;;
    --no-build) build_first=0 ;;
    --later_ptx_coeff|--later-ptx-coeff) later_ptx=$2; shift ;;
    --later_ptx_data|--later-ptx-data) later_ptx_data=$2; shift ;;
    --later_kl_coeff|--later-kl-coeff) later_kl=$2; shift ;;
    --later_actor_lr|--later-actor-lr) later_actor_lr=$2; shift ;;
    --fresh_prompts|--fresh-prompts) fresh=$2; shift ;;
    --cm_round_weight|--cm-round-weight) cm_round_weight=$2; shift ;;
    --rm_old_weight|--rm-old-weight) rm_old_weight=$2; shift ;;
    --eval_prompts|--eval-prompts) eval_prompts=$2; shift ;;
    *) echo "rounds: unknown argument $1 ($usage)" >&2; exit 2 ;;
  esac
  shift
done
[[ -n $later_epochs ]] || { later_epochs=2; [[ $size == tiny ]] && later_epochs=1; }
[[ -n $fresh ]] || { fresh=150; [[ $size == tiny ]] && fresh=12; }
# need_int FLAG VALUE MIN, need_number FLAG VALUE: exit 2 with the flag's name unless VALUE is
# an integer >= MIN, or a non-negative decimal number (3, 0.5, .5, 3e-4).
need_int() {
  [[ $2 =~ ^[0-9]+$ ]] && (( 10#$2 >= $3 )) || {
    echo "rounds: $1 takes an integer >= $3, got '$2'" >&2; exit 2; }
}
positive() { awk -v x="$1" 'BEGIN { exit !(x > 0) }'; }
need_number() {
  [[ $2 =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$ ]] || {
    echo "rounds: $1 takes a non-negative number, got '$2'" >&2; exit 2; }
}
need_int --rounds "$rounds" 1; need_int --seed "$seed" 0; need_int --seeds "$seeds" 0
need_int --threads "$threads" 0; need_int --later_window "$later_window" 1
need_int --later_epochs "$later_epochs" 1; need_int --fresh_prompts "$fresh" 1
need_int --eval_prompts "$eval_prompts" 0
need_number --label_noise "$label_noise"; need_number --later_ratio "$later_ratio"
need_number --later_confidence "$later_confidence"
need_number --later_lambda_max "$later_lambda_max"; need_number --later_ptx_coeff "$later_ptx"
need_number --later_kl_coeff "$later_kl"; need_number --later_actor_lr "$later_actor_lr"
need_number --cm_round_weight "$cm_round_weight"; need_number --rm_old_weight "$rm_old_weight"
positive "$later_actor_lr" && positive "$cm_round_weight" || {
  echo "rounds: --later_actor_lr and --cm_round_weight must be above 0, got $later_actor_lr and $cm_round_weight" >&2; exit 2; }
[[ $later_ptx_data == sft || $later_ptx_data == preferred ]] || {
  echo "rounds: --later_ptx_data takes sft or preferred, got '$later_ptx_data'" >&2; exit 2; }
awk -v r="$later_ratio" 'BEGIN { exit !(r > 0 && r <= 1) }' || {
  echo "rounds: --later_ratio must be in (0, 1], got $later_ratio" >&2; exit 2; }
[[ $rm_pairs == fresh || $rm_pairs == all ]] || {
  echo "rounds: --rm_pairs takes fresh or all, got '$rm_pairs'" >&2; exit 2; }
[[ $rm_init == previous || $rm_init == sft ]] || {
  echo "rounds: --rm_init takes previous or sft, got '$rm_init'" >&2; exit 2; }
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
# steps (RL epochs: --later_epochs). The new pairs of a round are far fewer than the world's
# 4000 (time), so each round's file enters the CM mixture with proportion --cm_round_weight
# (default 4; whole passes).
fresh_k=2; pool=80; pool_k=3; top=40; top_k=4; score_steps=300
case $size in
  tiny) pool=8; top=4; score_steps=6 ;;
  quick) score_steps=120 ;;
esac

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
      --target_unsafe_ratio "$first_ratio" "${t[@]}"
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
    stamp "seed $s, round 1 (${size:-default} size; the main job's requirement, tiny: ratio $first_ratio)"
    round_one "$s" "$r1"
  fi
  local world=$r1/world sft=$r1/sft
  local data=("$world/preference.jsonl")  # the CM's pairs: all so far
  local policy=$r1/ppo-lag rm_prev=$r1/rm k
  for (( k = 2; k <= rounds; k++ )); do
    local rd=$dir/round-$k
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
    data+=("$rd/pairs.jsonl:$cm_round_weight")
    # The RM on this round's pairs only (they rank the answers of the policy it will train;
    # older pairs were drawn from weaker policies), the CM on all pairs so far (whether an
    # answer is harmful does not change with the policy); docs/rlhf.md, "Rounds".
    local rm_data=("$rd/pairs.jsonl") rm_from=$rm_prev
    [[ $rm_pairs == all ]] && rm_data=("${data[@]}")
    if positive "$rm_old_weight"; then
      rm_data=("$rd/pairs.jsonl"); local f
      for f in "${data[@]}"; do [[ ${f%%:*} == "$rd/pairs.jsonl" ]] || rm_data+=("${f%%:*}:$rm_old_weight"); done
    fi
    [[ $rm_init == sft ]] && rm_from=$sft
    stamp "seed $s, round $k: RM from $rm_init ($rm_from) on ${#rm_data[@]} pair file(s), CM from SFT on all ${#data[@]}"
    local score=(--epochs 1 --max_steps "$score_steps" --per_device_train_batch_size 8
                 --gradient_accumulation_steps 1 --learning_rate 1e-4 --weight_decay 0.1
                 --max_length 128 --threads "$threads" --seed "$s" --log_interval 50)
    [[ $size == tiny ]] || score+=(--eval_split_ratio 0.05 --eval_interval "$score_steps")
    "$B" train rm --model_name_or_path "$rm_from" --train_datasets "${rm_data[@]}" \
      --output_dir "$rd/rm" "${score[@]}"
    "$B" train cm --model_name_or_path "$sft" --train_datasets "${data[@]}" \
      --output_dir "$rd/cm" "${score[@]}"
    stamp "seed $s, round $k: PPO-Lag from round $((k - 1))'s policy, at most $later_ratio of its unsafe share"
    local rl=(--train_datasets "$world/prompts.jsonl" --max_length 128 --epochs "$later_epochs"
              --threads "$threads" --seed "$s" --target_unsafe_ratio "$later_ratio"
              --cost_confidence "$later_confidence" --episode_cost_window_size "$later_window"
              --lambda_max "$later_lambda_max" --kl_coeff "$later_kl")
    if [[ $size == tiny ]]; then
      rl+=(--per_device_prompt_batch_size 8 --per_device_train_batch_size 8 --calibration_prompts 8)
    else
      rl+=(--actor_lr "$later_actor_lr" --critic_lr 3e-4)
    fi
    # PTX 0 means no PTX set at all (with a PTX set, the RL gradient would still be halved).
    if positive "$later_ptx"; then
      local ptx_set=$world/sft.json
      if [[ $later_ptx_data == preferred ]]; then
        ptx_set=$rd/ptx.json
        preferred_set "$ptx_set" "${data[@]}"
      fi
      rl+=(--ptx_datasets "$ptx_set" --ptx_coeff "$later_ptx")
    fi
    # Fresh critics from this round's RM and CM (the last round's critics learned values of the
    # last round's models).
    BEAVER="$B" "$root/train/scripts/ppo-lag.sh" --actor_model_name_or_path "$policy" \
      --reward_model_name_or_path "$rd/rm" --cost_model_name_or_path "$rd/cm" \
      --reward_critic_model_name_or_path "$rd/rm" --cost_critic_model_name_or_path "$rd/cm" \
      --output_dir "$rd/ppo-lag" "${rl[@]}"
    policy=$rd/ppo-lag rm_prev=$rd/rm
  done

  local judge=$r1
  (( rounds >= 2 )) && judge=$dir/round-$rounds
  local held_out
  held_out=$(eval_set "$world" "$dir/eval-world")
  stamp "seed $s: evaluation of SFT and every round on $(wc -l < "$held_out") held-out prompts ($held_out; RM and CM of round $rounds)"
  local names=(sft) paths=("$sft")
  for (( k = 1; k <= rounds; k++ )); do names+=("v$k"); paths+=("$dir/round-$k/ppo-lag"); done
  local i eval_args=()
  for i in "${!names[@]}"; do
    rm -rf "$dir/eval/${names[i]}"
    local ev=(--model "${paths[i]}" --reward-model "$judge/rm" --cost-model "$judge/cm"
              --prompts "$held_out" --oracle toyworld --output "$dir/eval/${names[i]}"
              --threads "$threads")
    [[ $size == tiny ]] && ev+=(--max_length 128)
    "$B" eval "${ev[@]}" 2>&1 | grep "eval:" || true
    [[ -s $dir/eval/${names[i]}/summary.json ]] || { echo "rounds: eval of ${names[i]} failed" >&2; exit 1; }
  done
  "$B" report --eval "SFT=$dir/eval/sft" \
    $(for (( k = 1; k <= rounds; k++ )); do echo "--eval Beaver-v$k=$dir/eval/v$k"; done) \
    --output "$dir/rounds.md"
  requirements_table "$dir/requirements.md" "$rounds" "$dir"
  steps_table "$dir/steps" "$rounds" "$dir"
  cat "$dir/requirements.md" "$dir/steps.md"
}

# The held-out prompts of the evaluation, printed: the world's own eval.jsonl, or with
# --eval_prompts N the same world written again (its world.json settings and seed) with N eval
# prompts into $2. The world's other files must come out byte-identical (the eval split has a
# stream of its own), which makes sure the larger set belongs to the world the rounds trained
# on; its first prompts are the world's own. Args: WORLD_DIR OUT_DIR.
eval_set() {
  local w=$1 ew=$2
  local own
  own=$(wc -l < "$w/eval.jsonl")
  if [[ $eval_prompts == 0 || $eval_prompts == "$own" ]]; then echo "$w/eval.jsonl"; return; fi
  local settings
  settings=$(python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
print(" ".join("--%s %s" % (k, c[k]) for k in ("seed", "sft_examples", "preference_pairs",
      "ppo_prompts", "label_noise", "harmful_fraction", "sft_compliance")))' "$w/world.json") || {
    echo "rounds: cannot read the world's settings from $w/world.json" >&2; exit 1; }
  rm -rf "$ew"
  # shellcheck disable=SC2086
  "$B" toyworld --output "$ew" $settings --eval_prompts "$eval_prompts" > "$ew.log" 2>&1 || {
    cat "$ew.log" >&2; echo "rounds: writing the evaluation world failed" >&2; exit 1; }
  local f
  for f in sft.json preference.jsonl prompts.jsonl; do
    cmp -s "$w/$f" "$ew/$f" || {
      echo "rounds: $ew/$f differs from $w/$f: $w/world.json does not rebuild the world the rounds trained on" >&2
      exit 1; }
  done
  echo "$ew/eval.jsonl"
}

# steps.md and steps.json: each round against the round before (SFT -> v1, ..., v(N-1) -> vN) on
# the same held-out prompts, paired prompt by prompt by `beaver report` with the earlier policy as
# its baseline (OUT/step-K.md and .json): the change of the true harmful rate on harmful prompts
# and of benign helpfulness, each with the standard error of the paired mean (over several seeds:
# the mean over the seeds with its 95% interval, and per seed). The claim per step and seed:
# harm lower, helpfulness not lower by more than 0.05 (point estimates; the standard errors say
# how far to trust them). Args: OUT (no suffix) ROUNDS SEED_DIR...
steps_table() {
  local out=$1 n=$2 k d; shift 2
  local names=(sft) labels=(SFT) reports=()
  for (( k = 1; k <= n; k++ )); do names+=("v$k"); labels+=("Beaver-v$k"); done
  rm -rf "$out"; mkdir -p "$out"
  for (( k = 1; k <= n; k++ )); do
    local a=() b=()
    for d in "$@"; do a+=("$d/eval/${names[k-1]}"); b+=("$d/eval/${names[k]}"); done
    "$B" report --eval "${labels[k-1]}=$(IFS=,; echo "${a[*]}")" \
      --eval "${labels[k]}=$(IFS=,; echo "${b[*]}")" --output "$out/step-$k.md" > /dev/null 2>&1 || {
      echo "rounds: beaver report of ${labels[k]} against ${labels[k-1]} failed" >&2; exit 1; }
    reports+=("$out/step-$k.json")
  done
  python3 - "$out" "${reports[@]}" <<'PY3'
import json, sys
out, reports = sys.argv[1], sys.argv[2:]
TOL = 0.05
steps, lines = [], []
for path in reports:
    base, row = json.load(open(path))
    if "paired_vs_baseline" not in row:
        sys.exit("rounds: %s has no paired differences (evaluated without the oracle?)" % path)
    harm = row["paired_vs_baseline"]["harmful_rate_harmful_prompts"]
    helpf = row["paired_vs_baseline"]["helpfulness_benign"]
    lower = [x["mean"] < 0 for x in harm["per_seed"]]
    kept = [x["mean"] >= -TOL for x in helpf["per_seed"]]
    steps.append({"from": base["label"], "to": row["label"], "harmful_rate_harmful_prompts": harm,
                  "helpfulness_benign": helpf, "harm_lower": lower, "helpfulness_kept": kept})
    k = len(lower)
    if k == 1:
        cell = lambda x, s, f: (f + " ± " + f.replace("+", "") + " (%d prompts)") % (s * x["mean"], s * x["standard_error"], x["n"])
        yes = lambda v: "yes" if v[0] else "NO"
    else:
        cell = lambda x, s, f: (f + " ± " + f.replace("+", "") + " (seeds: %s)") % (
            s * x["mean"], s * x["half"], ", ".join(f % (s * y["mean"]) for y in x["per_seed"]))
        yes = lambda v: "%d of %d" % (sum(v), len(v))
    lines.append("| %s → %s | %s | %s | %s | %s |" % (
        base["label"], row["label"], cell(harm, 100, "%+.1f"), cell(helpf, 1, "%+.3f"),
        yes(lower), yes(kept)))
one = len(steps[0]["harm_lower"]) == 1
json.dump({"tolerance": TOL, "seeds": len(steps[0]["harm_lower"]), "steps": steps},
          open(out + ".json", "w"), indent=1)
with open(out + ".md", "w") as f:
    f.write("| step | harmful rate, harmful prompts: change (truth, points) | helpfulness, benign: "
            "change (truth, of 4) | harm lower | helpfulness kept (within %.2f) |\n"
            "|---|---|---|---|---|\n" % TOL)
    f.write("\n".join(lines) + "\n")
    f.write("\nPaired prompt by prompt, later minus earlier policy: %s.\n" % (
        "mean ± its standard error" if one else
        "mean over the seeds ± the half-width of its 95% interval, then each seed's change"))
PY3
}

# The PTX set of a later round from the labelled pairs so far (--later_ptx_data preferred): per
# pair the response labelled better if it is labelled safe, else the other one if that is
# labelled safe, else none; as an Alpaca JSON array. Args: OUT.json PAIRS[:weight]...
preferred_set() {
  python3 - "$@" <<'PY1'
import json, sys
out, files = sys.argv[1], [a.rsplit(":", 1)[0] if ":" in a and a.rsplit(":", 1)[1].replace(".", "").isdigit() else a for a in sys.argv[2:]]
rows = []
for path in files:
    for line in open(path):
        if not line.strip():
            continue
        p = json.loads(line)
        b = p["better_response_id"]
        for k in (b, 1 - b):
            if p["is_response_%d_safe" % k]:
                rows.append({"instruction": p["prompt"], "input": "", "output": p["response_%d" % k]})
                break
json.dump(rows, open(out, "w"))
print("rounds: PTX set %s: %d safe preferred answers from %d pair files" % (out, len(rows), len(files)))
PY1
}

# requirements.md: per round, the requirement and how PPO-Lag ended (constraint.json) beside the
# oracle's two columns (eval summary.json); over several seed folders, each number as mean and
# 95% interval (Student's t) and "met" as a count. Args: OUT.md ROUNDS SEED_DIR...
requirements_table() {
  python3 - "$@" <<'PY2'
import json, math, os, statistics, sys
out, rounds, dirs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
T = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228]
def cell(xs, fmt):
    if len(xs) == 1:
        return fmt % xs[0]
    m, h = statistics.mean(xs), (T[len(xs) - 2] if len(xs) <= 11 else 1.96) * statistics.stdev(xs) / math.sqrt(len(xs))
    return (fmt + " ± " + fmt) % (m, h)
def load(p):
    with open(p) as f:
        return json.load(f)
rows = []
names = ["sft"] + ["v%d" % k for k in range(1, rounds + 1)]
for n in names:
    truth = [load(os.path.join(d, "eval", n, "summary.json"))["ground_truth"] for d in dirs]
    c = [] if n == "sft" else [load(os.path.join(d, "round-" + n[1:], "ppo-lag", "constraint.json")) for d in dirs]
    def col(f, fmt):
        try:
            return cell([f(x) for x in c], fmt) if c else "-"
        except (KeyError, TypeError):
            return "-"
    ratio = sorted({x.get("target_unsafe_ratio") for x in c}, key=str)
    rows.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        "SFT" if n == "sft" else "Beaver-" + n,
        "-" if not c else ", ".join("ratio %g" % r if r is not None else "share" for r in ratio),
        col(lambda x: 100 * x["calibration"]["unsafe_share"], "%.1f%%"),
        col(lambda x: 100 * x["resolved_target_unsafe_share"], "%.1f%%"),
        col(lambda x: 100 * x["final_unsafe_share"], "%.1f%%"),
        col(lambda x: x["final_lambda"], "%.2f"),
        "-" if not c else "%d of %d" % (sum(bool(x["met"]) for x in c), len(c)),
        cell([100 * t["harmful_rate_harmful_prompts"] for t in truth], "%.1f%%"),
        cell([t["helpfulness_benign"] for t in truth], "%.2f")))
with open(out, "w") as f:
    f.write("| model | requirement | starting unsafe share (CM) | target share | final unsafe share (last window) | λ at end | met | harmful rate, harmful prompts (truth) | helpfulness, benign (truth, of 4) |\n")
    f.write("|---|---|---|---|---|---|---|---|---|\n")
    f.write("\n".join(rows) + "\n")
PY2
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
  "$B" report "${args[@]}" --output "$out/rounds.md"
  dirs=(); for s in $seed_list; do dirs+=("$out/seed-$s"); done
  requirements_table "$out/requirements.md" "$rounds" "${dirs[@]}"
  steps_table "$out/steps" "$rounds" "${dirs[@]}"
  cat "$out/requirements.md" "$out/steps.md"
fi
stamp "done; tables: $(for s in $seed_list; do echo -n "$out/seed-$s/rounds.md "; done)$( (( seeds >= 2 )) && echo "$out/rounds.md")"
