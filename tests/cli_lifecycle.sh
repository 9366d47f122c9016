#!/usr/bin/env bash
# No lost runs, through the binary on a tiny world: SIGINT or SIGTERM during a training stage
# ends it after the current step with a resumable checkpoint, named on stderr, and exit code
# 128 + signal; the same command with --resume continues from there; --resume with nothing to
# resume is an error that says so; resuming a run that reached --max_steps does nothing; and
# --max_steps sizes the plan shown in the progress line.
# Usage: tests/cli_lifecycle.sh BUILD_DIR
set -uo pipefail
source "$(dirname "$0")/cli_lib.sh"
cli_init lifecycle "${1:-}"
export OMP_NUM_THREADS=1

# A tiny world, tokenizer and model.
setup() {
  "$beaver" toyworld -o "$out/world" --sft_examples 40 --preference_pairs 40 --ppo_prompts 10 \
    --eval_prompts 10 &&
    "$beaver" tokenizer train --input "$out/world/corpus.txt" --vocab_size 200 --output "$out/tok" &&
    "$beaver" init --hidden 32 --layers 1 --heads 2 --kv_heads 2 --intermediate 64 \
      --vocab_from "$out/tok" --max_position 64 --seed 1 --output "$out/init"
}
setup >"$out/setup.log" 2>&1 || { cat "$out/setup.log"; echo "FAIL: setup"; exit 1; }

lines() { [[ -f $1 ]] && wc -l <"$1" || echo 0; }

# interrupt SIGNAL DIR CMD...: starts beaver CMD in the background, sends SIGNAL once DIR's
# metrics.jsonl has a few records, and leaves the exit code in $code and the output in $log.
interrupt() {
  local signal=$1 dir=$2; shift 2
  log=$out/$(basename "$dir").log
  "$beaver" "$@" >"$log" 2>&1 &
  local pid=$! waited=0
  while (($(lines "$dir/metrics.jsonl") < 3)) && kill -0 "$pid" 2>/dev/null && ((waited < 600)); do
    sleep 0.1; waited=$((waited + 1))
  done
  kill "-$signal" "$pid" 2>/dev/null
  wait "$pid"; code=$?
}

# A run that a signal stopped: exit code, the checkpoint named on stderr, no final model.
check_stopped() {
  local what=$1 dir=$2 want=$3
  [[ $code == "$want" ]] || fail "$what: exit code $code after the signal, expected $want: $(tail -3 "$log")"
  grep -qE "resumable checkpoint in $dir/checkpoints/step-[0-9]+" "$log" ||
    fail "$what: no 'resumable checkpoint in ...' line: $(tail -3 "$log")"
  [[ -f $dir/checkpoints/latest ]] || fail "$what: no checkpoint written"
  [[ ! -f $dir/beaver.json ]] || fail "$what: a final model was written although the run stopped"
}

# The step of a checkpoint folder name: step-00000007 -> 7.
step_of() { local s; s=$(tr -d '\n' <"$1/checkpoints/latest"); echo $((10#${s#step-})); }

# 1. SIGINT during SFT (no --save_interval: the stage scripts' default), then --resume.
sft=(train sft --model_name_or_path "$out/init" --train_datasets "$out/world/sft.json"
     --max_length 64 --per_device_train_batch_size 2 --gradient_accumulation_steps 1
     --epochs 5000 --threads 1 --output_dir "$out/sft")
interrupt INT "$out/sft" "${sft[@]}"
check_stopped "sft SIGINT" "$out/sft" 130
stopped=$(step_of "$out/sft")
grep -q "stopped by SIGINT after step $stopped of" "$log" || fail "sft: the stop line names another step: $(tail -2 "$log")"
# Resume for two more steps: it starts where the checkpoint is and writes the final model.
expect 0 "resumed from .*step-0*$stopped" "${sft[@]}" --resume --max_steps $((stopped + 2))
[[ -f $out/sft/beaver.json ]] || fail "sft: the resumed run wrote no final model"
last=$(tail -1 "$out/sft/metrics.jsonl")
[[ $last == *"\"step\":$((stopped + 2)),"* ]] || fail "sft: the last record is not step $((stopped + 2)): $last"

# 2. Resuming a run that reached --max_steps: nothing trained, nothing written.
before=$(ls "$out/sft/checkpoints"; lines "$out/sft/metrics.jsonl"; stat -c %Y "$out/sft/model.safetensors")
expect 0 "nothing to do" "${sft[@]}" --resume --max_steps $((stopped + 2))
after=$(ls "$out/sft/checkpoints"; lines "$out/sft/metrics.jsonl"; stat -c %Y "$out/sft/model.safetensors")
[[ $before == "$after" ]] || fail "resuming a finished run changed its folder: $before -> $after"

# 3. --max_steps sizes the plan: "step i/N" counts to the cap, not to the epochs' total.
expect 0 'step 3/3 ' train sft --model_name_or_path "$out/init" --train_datasets "$out/world/sft.json" \
  --max_length 64 --per_device_train_batch_size 2 --epochs 50 --max_steps 3 --threads 1 \
  --output_dir "$out/capped"

# 4. --resume with nothing to resume is an error that says so (and writes no metrics).
expect 1 'nothing to resume' train sft --model_name_or_path "$out/init" \
  --train_datasets "$out/world/sft.json" --output_dir "$out/fresh" --resume
[[ ! -f $out/fresh/metrics.jsonl ]] || fail "a refused --resume started a run"

# 5. SIGTERM during reward-model training.
rm_cmd=(train rm --model_name_or_path "$out/init" --train_datasets "$out/world/preference.jsonl"
        --max_length 64 --per_device_train_batch_size 2 --epochs 5000 --threads 1
        --output_dir "$out/rm")
interrupt TERM "$out/rm" "${rm_cmd[@]}"
check_stopped "rm SIGTERM" "$out/rm" 143

# 6. SIGINT during an RL stage, then --resume; and --resume with nothing to resume.
"$beaver" train rm --model_name_or_path "$out/init" --train_datasets "$out/world/preference.jsonl" \
  --max_length 64 --max_steps 1 --threads 1 --output_dir "$out/rm1" >"$out/rm1.log" 2>&1 ||
  fail "rm for the RL stage: $(tail -3 "$out/rm1.log")"
ppo=(train ppo --actor_model_name_or_path "$out/init" --reward_model_name_or_path "$out/rm1"
     --train_datasets "$out/world/prompts.jsonl" --max_length 64 --threads 1 --epochs 5000
     --per_device_prompt_batch_size 2 --per_device_train_batch_size 2 --output_dir "$out/ppo")
interrupt INT "$out/ppo" "${ppo[@]}"
check_stopped "ppo SIGINT" "$out/ppo" 130
stopped=$(step_of "$out/ppo")
expect 0 "resumed from" "${ppo[@]}" --resume --max_steps $((stopped + 1))
[[ -f $out/ppo/beaver.json ]] || fail "ppo: the resumed run wrote no actor"
ppo_fresh=("${ppo[@]}")
ppo_fresh[${#ppo_fresh[@]} - 1]=$out/ppo-fresh
expect 1 'nothing to resume' "${ppo_fresh[@]}" --resume

cli_finish "all run life-cycle checks passed"
