#!/usr/bin/env bash
# The main job on several seeds, reported as means with 95% intervals over the seeds:
#   scripts/seeds.sh [--seeds K] [--seed S] [--sweep] [--quick | --ci] [--out DIR] [--threads N]
#                    [--no-build]
# (scripts/demo.sh --seeds K / --sweep forwards here.) Runs `scripts/demo.sh --seed N --no-build`
# for N = S .. S+K-1 (S default 1, K default 1), each into DIR/seed-N (DIR default runs/seeds),
# then one `beaver report` over the seeds: DIR/results.md (+ results.json), the Elo table
# (round robin of every policy against every other on each held-out prompt, judged by the toy
# world's oracle, SFT anchored at 1000; DIR/results.elo.json) and the harm-versus-helpfulness
# plane DIR/plane.png.
# --sweep adds, on every seed, reward shaping at nu 0.1, 0.3, 3 and 10 (demo.sh runs nu 1) and
# PPO-Lag at requirement ratios 0.2 and 0.7 of SFT's unsafe share (demo.sh runs 0.4; the rest
# of the requirement, the RL flags and epochs are scripts/main-job.sh's, shared with demo.sh),
# each from the seed's own SFT, RM and CM, evaluated on the seed's held-out prompts.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BEAVER_BUILD_DIR:-$root/build}
source "$root/scripts/main-job.sh"
out=$root/runs/seeds
k=1
first=1
sweep=0
size=()
threads=  # empty: the demo's own default (one thread per side-by-side stage)
build_first=1
eval_size=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seeds) k=$2; shift ;;
    --seed) first=$2; shift ;;
    --sweep) sweep=1 ;;
    --quick|--ci) size=("$1") ;;
    --out) out=$2; shift ;;
    --threads) threads=$2; shift ;;
    --no-build) build_first=0 ;;
    --eval_prompts|--eval-prompts) eval_size=(--eval_prompts "$2"); shift ;;
    *) echo "seeds: unknown argument $1 (use --seeds K, --seed S, --sweep, --quick, --ci, --out DIR, --threads N, --no-build, --eval_prompts N)" >&2; exit 2 ;;
  esac
  shift
done
need_int seeds --seeds "$k" 1
need_int seeds --seed "$first"
if [[ $build_first == 1 ]]; then
  "$root/scripts/setup.sh"
  "$root/scripts/build.sh"
fi
B="$build/beaver"
mkdir -p "$out"
start=$(date +%s)
stamp() { echo "== seeds [$(( $(date +%s) - start )) s] $*"; }

# The sweep's extra RL runs take the demo's RL settings (scripts/main-job.sh).
rl_epochs=$(main_job_rl_epochs "${size[0]:-}")
extra_nus=(0.1 0.3 3 10)
[[ ${size[0]:-} == --ci ]] && extra_nus=(0.1 0.3 1 3 10)  # the CI size runs no shaping itself
extra_ratios=(0.2 0.7)

seeds=()
for (( n = first; n < first + k; n++ )); do seeds+=("$n"); done
for n in "${seeds[@]}"; do
  d="$out/seed-$n"
  stamp "seed $n: the main job (scripts/demo.sh --seed $n ${size[*]:-})"
  # The demo with its own thread default unless --threads was given, so that each seed's row
  # is the one `scripts/demo.sh --seed N` prints (results are bitwise only per thread count).
  BEAVER_BUILD_DIR=$build "$root/scripts/demo.sh" --seed "$n" --no-build --out "$d" \
    ${threads:+--threads "$threads"} ${size[@]+"${size[@]}"} ${eval_size[@]+"${eval_size[@]}"}
  [[ $sweep == 1 ]] || continue
  main_job_rl_flags "$d" "${threads:-1}" "$n" "$rl_epochs"
  models=(--actor_model_name_or_path "$d/sft" --reward_model_name_or_path "$d/rm"
          --cost_model_name_or_path "$d/cm" --reward_critic_model_name_or_path "$d/rm")
  for nu in "${extra_nus[@]}"; do
    stamp "seed $n: PPO with reward shaping R - $nu * C"
    rm -rf "$d/shaping-$nu"
    BEAVER="$B" "$root/train/scripts/ppo-shaping.sh" "${models[@]}" \
      --output_dir "$d/shaping-$nu" --shaping_nu "$nu" "${rl[@]}"
  done
  for ratio in "${extra_ratios[@]}"; do
    stamp "seed $n: PPO-Lagrangian, requirement ratio $ratio"
    rm -rf "$d/ppo-lag-$ratio"
    main_job_ppo_lag "$B" "$root" "$d" "$d/ppo-lag-$ratio" "$ratio"
  done
  for p in "${extra_nus[@]/#/shaping-}" "${extra_ratios[@]/#/ppo-lag-}"; do
    rm -rf "$d/eval/$p"
    "$B" eval --model "$d/$p" --reward-model "$d/rm" --cost-model "$d/cm" \
      --prompts "$d/world/eval.jsonl" --oracle toyworld --output "$d/eval/$p" \
      --threads "${threads:-1}" 2>&1 | grep "eval:" || true
  done
done

# Rows: the demo's policies, then the sweep's, each with one eval folder per seed.
policies=(sft ppo)
nus=()
[[ ${size[0]:-} == --ci ]] || nus=(1)
[[ $sweep == 1 ]] && nus=(0.1 0.3 1 3 10)
for nu in ${nus[@]+"${nus[@]}"}; do policies+=("shaping-$nu"); done
policies+=(ppo-lag)
[[ $sweep == 1 ]] && policies+=(ppo-lag-0.2 ppo-lag-0.7)
report=()
for p in "${policies[@]}"; do
  case $p in sft) label=SFT ;; ppo) label="PPO (reward only)" ;; ppo-lag) label="PPO-Lag (Safe RLHF)" ;;
    ppo-lag-*) label="PPO-Lag (ratio ${p#ppo-lag-})" ;; shaping-*) label="PPO shaping (nu ${p#shaping-})" ;; esac
  dirs=()
  for n in "${seeds[@]}"; do dirs+=("$out/seed-$n/eval/$p"); done
  report+=(--eval "$label=$(IFS=,; echo "${dirs[*]}")")
done
stamp "results over seeds ${seeds[*]} (held-out prompts; truth = the toy world's oracle)"
"$B" report "${report[@]}" --elo --plane "$out/plane.png" --output "$out/results.md"
echo "harm-versus-helpfulness plane: $out/plane.png"
stamp "done; outputs under $out"
