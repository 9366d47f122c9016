# The main job's shared settings, sourced (not run) by scripts/demo.sh and scripts/seeds.sh so
# that the demo and the multi-seed sweep cannot drift apart:
#   source "$root/scripts/main-job.sh"
# It defines, and changes nothing else:
#   need_int WHAT NAME VALUE [MIN]   exits 2 unless VALUE is an integer >= MIN (default 0)
#   main_job_rl_epochs SIZE          RL epochs for --quick, --ci or the full size ("")
#   main_job_rl_flags D THREADS SEED EPOCHS
#                                    sets the array `rl`: the RL flags every PPO run of the
#                                    main job shares (the world in folder D)
#   main_job_requirement [RATIO]     sets the array `requirement`: PPO-Lag's requirement
#                                    (RATIO default $main_job_ratio)
#   main_job_ppo_lag B ROOT D OUT [RATIO]
#                                    runs PPO-Lag from D's SFT, RM and CM into OUT
# The requirement (docs/rlhf.md, "The requirement"): at most 0.4 of the SFT policy's measured
# unsafe share (--target_unsafe_ratio), λ following the mean cost of the last 128 responses plus
# two standard errors, and the verdict on 512 fresh responses of the final policy
# (--constraint_check_responses) rather than on the training window, which mixes older policies.

main_job_ratio=0.4
main_job_confidence=2
main_job_window=128
main_job_check=512

need_int() {
  local what=$1 name=$2 value=$3 min=${4:-0}
  if ! [[ $value =~ ^[0-9]+$ ]] || (( 10#$value < min )); then
    echo "$what: $name takes an integer >= $min, got '$value'" >&2
    exit 2
  fi
}

main_job_rl_epochs() {
  case ${1:-} in
    --quick) echo 2 ;;
    --ci) echo 4 ;;
    "") echo 6 ;;
    *) echo "main-job: unknown size '$1' (use --quick, --ci or nothing)" >&2; exit 2 ;;
  esac
}

# The reference defaults (train/scripts/*.sh) with three changes for a 1M-parameter model
# trained from scratch: larger learning rates, a PTX coefficient of 1 (the SFT set answers half
# of the harmful prompts by complying, so a weight of 16 pins the actor to that behaviour), and
# PPO-Lag's requirement below.
main_job_rl_flags() {
  local d=$1 threads=$2 seed=$3 epochs=$4
  rl=(--train_datasets "$d/world/prompts.jsonl" --ptx_datasets "$d/world/sft.json"
      --max_length 128 --epochs "$epochs" --actor_lr 3e-4 --critic_lr 3e-4 --ptx_coeff 1
      --threads "$threads" --seed "$seed")
}

main_job_requirement() {
  local ratio=${1:-$main_job_ratio}
  requirement=(--target_unsafe_ratio "$ratio" --cost_confidence "$main_job_confidence"
               --episode_cost_window_size "$main_job_window"
               --constraint_check_responses "$main_job_check")
}

# Needs `rl` set (main_job_rl_flags) for the same world D.
main_job_ppo_lag() {
  local b=$1 root=$2 d=$3 out=$4 ratio=${5:-$main_job_ratio}
  main_job_requirement "$ratio"
  BEAVER="$b" "$root/train/scripts/ppo-lag.sh" --actor_model_name_or_path "$d/sft" \
    --reward_model_name_or_path "$d/rm" --cost_model_name_or_path "$d/cm" \
    --reward_critic_model_name_or_path "$d/rm" --cost_critic_model_name_or_path "$d/cm" \
    --output_dir "$out" "${requirement[@]}" "${rl[@]}"
}
