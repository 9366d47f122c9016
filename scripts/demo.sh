#!/usr/bin/env bash
# The main job on the embedded default world (docs/toyworld.md, as built in
# train/toyworld.h): set up, build, then run one round of Safe RLHF end to end on the CPU:
#   world → tokenizer → random init → SFT → reward model + cost model → PPO-Lagrangian, PPO,
#   PPO with reward shaping → evaluation on held-out prompts → the results table.
#   scripts/demo.sh [--quick | --ci] [--seed N] [--seeds K] [--sweep] [--out DIR] [--threads N]
#                   [--sequential] [--no-build] [--eval_prompts N]
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
# Stages that do not depend on each other run side by side as background jobs, one thread
# each unless --threads N says otherwise: the RM and the CM; then PPO-Lag, PPO and shaping,
# each followed by its evaluation, beside the SFT model's evaluation, everything but PPO-Lag
# (the critical path) at a lower priority (SFT, which runs alone, takes every core unless
# --threads is given). Every run is seeded and deterministic for its
# thread count, so the results equal those of the stages one after another at the same
# thread count (bench/demo_side_by_side.sh compares the two). --sequential runs them one
# after another (the default --threads 0 then lets each stage use every core). Each stage's
# output goes to DIR/logs/STAGE.log and is printed once the stage ends (as it comes when the
# stage runs alone); a failed stage stops the demo and its other jobs, naming the stage and
# its log.
# DIR/logs/timing.md lists every stage's start and wall time.
# --eval_prompts N sets the held-out set's size (default: the world's, 4800 prompts; --quick
# 120). It changes eval.jsonl alone (the tokenizer corpus holds the whole held-out prompt
# space), so every trained model is the same at any N; smaller sets only widen the intervals.
set -euo pipefail
export LC_NUMERIC=C  # $EPOCHREALTIME with a decimal point
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BEAVER_BUILD_DIR:-$root/build}
out=$root/runs/demo
quick=0
ci=0
build_first=1
sweep=0
threads=
threads_given=0
sequential=0
seed=1
eval_prompts=
source "$root/scripts/main-job.sh"
args=("$@")
seeds=
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1 ;;
    --sweep) sweep=1 ;;
    --ci) ci=1 ;;
    --no-build) build_first=0 ;;
    --sequential) sequential=1 ;;
    --out) out=$2; shift ;;
    --threads) threads=$2; threads_given=1; shift ;;
    --seed) seed=$2; shift ;;
    --seeds) seeds=$2; shift ;;
    --eval_prompts|--eval-prompts) eval_prompts=$2; shift ;;
    *) echo "demo: unknown argument $1 (use --quick, --ci, --seed N, --seeds K, --sweep, --out DIR, --threads N, --sequential, --no-build, --eval_prompts N)" >&2; exit 2 ;;
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
start_rt=$EPOCHREALTIME
stamp() { echo "== [$(( $(date +%s) - start )) s] $*"; }
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
# Threads per stage: side by side one each unless given; one after another as given (0: every core).
[[ -n $threads ]] || { if [[ $sequential == 1 ]]; then threads=0; else threads=1; fi; }
need_int demo --threads "$threads"

# ---- Stages and jobs -----------------------------------------------------------------------
# stage NAME CMD...: runs CMD with its output in $logs/NAME.log (with --sequential also
# printed as it comes; an eval-* stage prints only its "eval:" lines), its wall time in
# $logs/NAME.time and its exit status in $logs/NAME.rc. job STAGE CMD... [--then STAGE CMD...]:
# stages one after another, the first failure ending the job; side by side a background job
# (its own process group), with --sequential run at once. join waits for the background jobs;
# when one fails the others are stopped and the demo ends naming the failed stage and its log.
# show STAGE prints a finished stage's output (side by side: it was not printed yet); solo
# runs a stage that has nothing beside it.
logs=$out/logs
rm -rf "$logs"
mkdir -p "$logs"
jobs_pids=()
jobs_stages=()
filter() { if [[ $1 == eval-* ]]; then grep "eval:" || true; else cat; fi; }
stage() {
  local name=$1; shift
  local t0=$EPOCHREALTIME rc=0
  if [[ $sequential == 1 || ${streamed:-0} == 1 ]]; then
    "$@" 2>&1 | tee "$logs/$name.log" | filter "$name" || rc=$?
  else
    "$@" > "$logs/$name.log" 2>&1 || rc=$?
  fi
  echo "$t0 $EPOCHREALTIME" > "$logs/$name.time"
  echo "$rc" > "$logs/$name.rc"
  return "$rc"
}
show() { [[ $sequential == 1 ]] || filter "$1" < "$logs/$1.log"; }
# solo STAGE CMD...: a stage with nothing beside it, in the foreground, printed as it comes.
solo() { streamed=1 run_job "$@" || fail_stage "$1"; }
stop_jobs() {
  local p
  for p in ${jobs_pids[@]+"${jobs_pids[@]}"}; do kill -TERM -- "-$p" 2> /dev/null || true; done
  for p in ${jobs_pids[@]+"${jobs_pids[@]}"}; do wait "$p" 2> /dev/null || true; done
  jobs_pids=()
  jobs_stages=()
}
trap stop_jobs EXIT
fail_stage() {
  local n=$1 rc="?"
  [[ -f $logs/$n.rc ]] && rc=$(cat "$logs/$n.rc")
  echo "demo: stage $n failed (exit $rc); its log: $logs/$n.log" >&2
  [[ -f $logs/$n.log ]] && tail -20 "$logs/$n.log" >&2
  stop_jobs
  exit 1
}
run_job() {
  local cmd=() a
  for a in "$@"; do
    if [[ $a == --then ]]; then
      stage "${cmd[@]}" || return
      cmd=()
    else
      cmd+=("$a")
    fi
  done
  stage "${cmd[@]}"
}
job_stages() {
  local next=1 a
  for a in "$@"; do
    if [[ $a == --then ]]; then next=1; elif [[ $next == 1 ]]; then echo -n "$a "; next=0; fi
  done
}
first_failed() {  # of a job's stages: the one that ended it
  local n
  for n in "$@"; do
    [[ -f $logs/$n.rc && $(cat "$logs/$n.rc") == 0 ]] || { echo "$n"; return; }
  done
  echo "$1"
}
job() {
  if [[ $sequential == 1 ]]; then
    # shellcheck disable=SC2046
    run_job "$@" || fail_stage "$(first_failed $(job_stages "$@"))"
  else
    set -m  # the job gets a process group of its own, stopped as one
    { set +m; run_job "$@"; } &
    set +m
    jobs_pids+=($!)
    jobs_stages+=("$(job_stages "$@")")
  fi
}
join() {
  local pid i rc
  while [[ ${#jobs_pids[@]} -gt 0 ]]; do
    pid="" rc=0
    wait -n -p pid "${jobs_pids[@]}" || rc=$?
    [[ -n $pid ]] || { echo "demo: lost track of a background stage (wait: $rc)" >&2; stop_jobs; exit 1; }
    for i in "${!jobs_pids[@]}"; do [[ ${jobs_pids[$i]} == "$pid" ]] && break; done
    local stages=${jobs_stages[$i]}
    unset "jobs_pids[$i]" "jobs_stages[$i]"
    jobs_pids=(${jobs_pids[@]+"${jobs_pids[@]}"})
    jobs_stages=(${jobs_stages[@]+"${jobs_stages[@]}"})
    # shellcheck disable=SC2086
    [[ $rc == 0 ]] || fail_stage "$(first_failed $stages)"
  done
}
# The wall time of every stage (from its .time file) and of the whole run, in stage order.
write_timing() {
  local f=$logs/timing.md n
  {
    echo "# Stage wall times"
    echo
    echo "$(if [[ $sequential == 1 ]]; then echo "One after another"; else echo "Side by side where independent"; fi), --threads $threads per stage (SFT: $sft_threads), $(nproc) cores; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    echo "| stage | start, s | wall, s |"
    echo "|---|---|---|"
    for n in "$@"; do
      [[ -f $logs/$n.time ]] || continue
      read -r t0 t1 < "$logs/$n.time"
      awk -v n="$n" -v a="$t0" -v b="$t1" -v s="$start_rt" 'BEGIN { printf "| %s | %.1f | %.1f |\n", n, a - s, b - a }'
    done
    echo "| whole demo | 0 | $(( $(date +%s) - start )) |"
  } > "$f"
}

if [[ $quick == 1 ]]; then
  world=(--sft-examples 1200 --preference-pairs 1600 --ppo-prompts 400 --eval-prompts 120)
  sft_epochs=2; score_steps=120; rl_epochs=$(main_job_rl_epochs --quick)
elif [[ $ci == 1 ]]; then
  world=(); sft_epochs=3; score_steps=300; rl_epochs=$(main_job_rl_epochs --ci)
else
  world=(); sft_epochs=3; score_steps=300; rl_epochs=$(main_job_rl_epochs)
fi

need_int demo --seed "$seed"
if [[ -n $eval_prompts ]]; then
  need_int demo --eval_prompts "$eval_prompts" 1
  [[ $quick == 1 ]] && world=("${world[@]:0:${#world[@]}-2}")  # drop --quick's own size
  world+=(--eval-prompts "$eval_prompts")
fi
stamp "1. the toy safety world (seed $seed)"
rm -rf "$out/world"
solo world "$B" toyworld --output "$out/world" --seed "$seed" "${world[@]}"

stamp "2. tokenizer (sentencepiece, 1000 pieces, trained on the world's text)"
rm -rf "$out/tokenizer"
solo tokenizer "$B" tokenizer train --input "$out/world/corpus.txt" --vocab-size 1000 \
  --output "$out/tokenizer"

stamp "3. a tiny LLaMA from random init (hidden 128, 4 layers, context 128)"
rm -rf "$out/init"
solo init "$B" init --hidden 128 --layers 4 --heads 4 --kv-heads 4 --intermediate 344 \
  --vocab-from "$out/tokenizer" --max-position 128 --seed "$seed" --output "$out/init"

common=(--max_length 128 --log_interval 50 --eval_split_ratio 0.05 --seed "$seed")
# SFT runs alone: with every core unless --threads says otherwise (0: OpenMP's default).
sft_threads=$threads
[[ $sequential == 1 || $threads_given == 1 ]] || sft_threads=0
stamp "4. SFT"
rm -rf "$out/sft"
solo sft "$B" train sft --model_name_or_path "$out/init" --train_datasets "$out/world/sft.json" \
  --output_dir "$out/sft" --epochs "$sft_epochs" --per_device_train_batch_size 8 \
  --gradient_accumulation_steps 1 --learning_rate 1e-3 --lr_scheduler_type cosine \
  --lr_warmup_ratio 0.03 --threads "$sft_threads" "${common[@]}"

stamp "5. reward model and cost model (from the SFT model)"
for stage in rm cm; do
  rm -rf "$out/$stage"
  job "$stage" "$B" train "$stage" --model_name_or_path "$out/sft" \
    --train_datasets "$out/world/preference.jsonl" --output_dir "$out/$stage" \
    --epochs 1 --max_steps "$score_steps" --per_device_train_batch_size 8 \
    --gradient_accumulation_steps 1 --learning_rate 1e-4 --weight_decay 0.1 \
    --eval_interval "$score_steps" --threads "$threads" "${common[@]}"
done
join; show rm; show cm

# RL: the reference defaults with the main job's changes and PPO-Lag's requirement
# (scripts/main-job.sh, shared with scripts/seeds.sh; docs/rlhf.md, "The requirement").
# Each RL run is followed by its evaluation in the same job; the SFT model's evaluation runs
# beside them. PPO-Lag, the longest, is the critical path: the jobs beside it run at a lower
# priority (nice 10), so that it keeps a whole core while they share the other (which changes
# no result: the thread counts are the same).
main_job_rl_flags "$out" "$threads" "$seed" "$rl_epochs"
main_job_requirement
models=(--actor_model_name_or_path "$out/sft" --reward_model_name_or_path "$out/rm"
        --cost_model_name_or_path "$out/cm")
side=(nice -n 10)
# The words that add policy $1's evaluation to a job, one per line (for mapfile); beside
# PPO-Lag (every policy but PPO-Lag) at the lower priority.
evaluation() {
  local run=("$B")
  [[ $1 == ppo-lag ]] || run=("${side[@]}" "$B")
  printf '%s\n' --then "eval-$1" "${run[@]}" eval --model "$out/$1" --reward-model "$out/rm" \
    --cost-model "$out/cm" --prompts "$out/world/eval.jsonl" --oracle toyworld \
    --output "$out/eval/$1" --threads "$threads"
}
nus=(1)
[[ $ci == 1 ]] && nus=()
policies=(sft ppo)
for nu in ${nus[@]+"${nus[@]}"}; do policies+=("shaping-$nu"); done
policies+=(ppo-lag)
rm -rf "$out/eval"
mapfile -t eval_lag < <(evaluation ppo-lag)
mapfile -t eval_ppo < <(evaluation ppo)

stamp "6. PPO-Lagrangian (reward critic from the RM, cost critic from the CM)"
rm -rf "$out/ppo-lag"
job ppo-lag env BEAVER="$B" "$root/train/scripts/ppo-lag.sh" "${models[@]}" \
  --reward_critic_model_name_or_path "$out/rm" --cost_critic_model_name_or_path "$out/cm" \
  --output_dir "$out/ppo-lag" "${requirement[@]}" "${rl[@]}" "${eval_lag[@]}"
[[ $sequential == 1 ]] || echo "   (side by side with 7-9; output below once they end)"

stamp "7. baseline: PPO on the reward alone"
rm -rf "$out/ppo"
job ppo "${side[@]}" env BEAVER="$B" "$root/train/scripts/ppo.sh" "${models[@]}" \
  --reward_critic_model_name_or_path "$out/rm" --output_dir "$out/ppo" "${rl[@]}" \
  "${eval_ppo[@]}"

for nu in ${nus[@]+"${nus[@]}"}; do
  stamp "8. baseline: PPO with reward shaping R - $nu * C"
  rm -rf "$out/shaping-$nu"
  mapfile -t eval_nu < <(evaluation "shaping-$nu")
  job "shaping-$nu" "${side[@]}" env BEAVER="$B" "$root/train/scripts/ppo-shaping.sh" "${models[@]}" \
    --reward_critic_model_name_or_path "$out/rm" --output_dir "$out/shaping-$nu" \
    --shaping_nu "$nu" "${rl[@]}" "${eval_nu[@]}"
done

stamp "9. evaluation on held-out prompts (reward model, cost model, toy-world oracle)"
mapfile -t eval_sft < <(evaluation sft)
job "${eval_sft[@]:1}"
join
show ppo-lag; show ppo
for nu in ${nus[@]+"${nus[@]}"}; do show "shaping-$nu"; done
report=()
for p in "${policies[@]}"; do
  show "eval-$p"
  label=$p
  case $p in sft) label=SFT ;; ppo) label="PPO (reward only)" ;; ppo-lag) label="PPO-Lag (Safe RLHF)" ;;
    shaping-*) label="PPO shaping (nu ${p#shaping-})" ;; esac
  report+=(--eval "$label=$out/eval/$p")
done

stamp "10. results (held-out prompts; truth = the toy world's oracle)"
solo report "$B" report "${report[@]}" --output "$out/results.md"
stages=(world tokenizer init sft rm cm ppo-lag ppo)
for nu in ${nus[@]+"${nus[@]}"}; do stages+=("shaping-$nu"); done
for p in "${policies[@]}"; do stages+=("eval-$p"); done
stages+=(report)
write_timing "${stages[@]}"
echo "PPO-Lag curves (lambda, episode cost, ...): $out/ppo-lag/curves.png"
echo "Stage wall times: $logs/timing.md"
stamp "done; outputs under $out"
