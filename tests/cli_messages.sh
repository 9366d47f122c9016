#!/usr/bin/env bash
# What a new user reads, through the binary on a tiny world: commands that write a folder refuse
# a non-empty one unless --overwrite; a missing or wrong model folder is named as such; no raw
# check expression reaches the user; `plot --y` with an unknown key lists the keys there are; a
# tokenizer that does not match its model is warned about at load; convert warns about a source
# without tokenizer.model; generate states its defaults, writes JSONL to stdout without
# --output and shows progress; chat keeps the conversation in the multi-turn template; eval
# shows progress with a rate and ETA.
# Usage: tests/cli_messages.sh BUILD_DIR
set -uo pipefail
source "$(dirname "$0")/cli_lib.sh"
cli_init messages "${1:-}"
cli_tail=3
export OMP_NUM_THREADS=1
all_output=$out/all-output.txt  # everything the commands printed, for the raw-check scan

setup() {
  "$beaver" toyworld -o "$out/world" --sft_examples 40 --preference_pairs 40 --ppo_prompts 10 \
    --eval_prompts 6 &&
    "$beaver" tokenizer train --input "$out/world/corpus.txt" --vocab_size 200 --output "$out/tok" &&
    "$beaver" tokenizer train --input "$out/world/corpus.txt" --vocab_size 100 --output "$out/tok100" &&
    "$beaver" init --hidden 32 --layers 1 --heads 2 --kv_heads 2 --intermediate 64 \
      --vocab_from "$out/tok" --max_position 160 --seed 1 --output "$out/init" &&
    for stage in rm cm; do
      "$beaver" train $stage --model_name_or_path "$out/init" \
        --train_datasets "$out/world/preference.jsonl" --max_length 64 --max_steps 1 \
        --threads 1 --output_dir "$out/$stage" || return 1
    done
}
setup >"$out/setup.log" 2>&1 || { tail -20 "$out/setup.log"; echo "FAIL: setup"; exit 1; }
eval_args=(--reward_model "$out/rm" --cost_model "$out/cm" --prompts "$out/world/eval.jsonl"
           --max_length 96 --threads 1)

# 1. No silent overwrites.
expect 0 'eval: 6/6 prompts \| [0-9.e+-]+ prompts/s \| ETA' eval --model "$out/init" "${eval_args[@]}" --output "$out/ev"
expect 1 'already holds .*--overwrite' eval --model "$out/init" "${eval_args[@]}" --output "$out/ev"
expect 1 'already holds .*--overwrite' arena --model_a "$out/init" --model_b "$out/init" \
  "${eval_args[@]}" --output "$out/ev"
expect 0 'eval: 6 prompts' eval --model "$out/init" "${eval_args[@]}" --output "$out/ev" --overwrite
expect 1 'already holds' toyworld -o "$out/world"
expect 1 'already holds' tokenizer train --input "$out/world/corpus.txt" --output "$out/tok"
expect 0 'arena, model B: 6/6 prompts' arena --model_a "$out/init" --model_b "$out/init" \
  "${eval_args[@]}" --output "$out/arena"

# 2. A missing or wrong model folder says so, in every command that reads one.
mkdir -p "$out/empty"
expect 1 "$out/nope: no such folder" generate --model "$out/nope" --prompt hi
refute 'sentencepiece|cannot open file'
expect 1 "$out/nope: no such folder" train sft --model_name_or_path "$out/nope" \
  --train_datasets "$out/world/sft.json" --output_dir "$out/sft-nope"
expect 1 "$out/nope: no such folder" eval --model "$out/nope" "${eval_args[@]}" --output "$out/ev-nope"
expect 1 "$out/nope: no such folder" train ppo --actor_model_name_or_path "$out/nope" \
  --reward_model_name_or_path "$out/rm" --train_datasets "$out/world/prompts.jsonl" --output_dir "$out/ppo-nope"
expect 1 "$out/nope: no such folder" export --input "$out/nope" --output "$out/exp-nope"
expect 1 "$out/nope: no such folder" convert --input "$out/nope" --output "$out/conv-nope"
expect 1 "$out/empty: not a model folder: it holds neither beaver.json .* nor config.json" \
  generate --model "$out/empty" --prompt hi
refute 'cannot open file'

# 3. plot: an unknown key lists the keys the file has.
expect 1 "no key 'nosuchkey' in .*; its keys are: .*loss.*lr" plot -i "$out/rm/metrics.jsonl" \
  -o "$out/p.png" --y loss,nosuchkey

# 4. A tokenizer that does not match its model, and config ids that disagree with it, are
# warned about at load (generate and training alike).
cp -r "$out/init" "$out/short-tok"
cp "$out/tok100/tokenizer.model" "$out/short-tok/tokenizer.model"
expect 0 'the model has 201 token ids but its tokenizer only 100 pieces' \
  generate --model "$out/short-tok" --prompt hi --max_new_tokens 2
expect 0 'the model has 201 token ids but its tokenizer only 100 pieces' train sft \
  --model_name_or_path "$out/short-tok" --train_datasets "$out/world/sft.json" --max_length 64 \
  --max_steps 1 --threads 1 --output_dir "$out/sft-short"
cp -r "$out/init" "$out/bad-eos"
sed -i 's/"eos_token_id": 2,/"eos_token_id": 7,/' "$out/bad-eos/beaver.json"
expect 0 "the config says eos_token_id 7 but the tokenizer's eos is 2" \
  generate --model "$out/bad-eos" --prompt hi --max_new_tokens 2
expect 0 '' generate --model "$out/init" --prompt hi --max_new_tokens 2
refute 'token ids but its tokenizer|the config says'

# 5. convert warns about a source without tokenizer.model and says what needs it.
expect 0 'exported' export --input "$out/init" --output "$out/hf"
rm -f "$out/hf/tokenizer.model"
expect 0 'has no tokenizer.model .*cannot be trained .*generate' convert --input "$out/hf" --output "$out/conv"

# 6. generate: defaults in --help, JSONL on stdout without --output, progress on stderr.
expect 0 'temperature 1.*128 new tokens' generate --help
jsonl=$("$beaver" generate --model "$out/init" --prompts "$out/world/eval.jsonl" \
  --max_new_tokens 3 --batch_size 4 --threads 1 2>"$out/gen.err"); code=$?
[[ $code == 0 ]] || fail "generate --prompts without --output exited $code: $(tail -3 "$out/gen.err")"
[[ $(grep -c '^{.*"prompt":.*"response":' <<<"$jsonl") == 6 ]] ||
  fail "generate --prompts without --output: stdout is not 6 JSONL records: $jsonl"
grep -qE 'generate: 4/6 prompts .*prompts/s .*ETA' "$out/gen.err" || fail "generate: no progress line: $(cat "$out/gen.err")"
grep -qE 'generate: 6/6 prompts' "$out/gen.err" || fail "generate: no final progress line"
cat "$out/gen.err" >>"$all_output"
# The same answers as with --output (the batching does not change the samples).
"$beaver" generate --model "$out/init" --prompts "$out/world/eval.jsonl" --max_new_tokens 3 \
  --batch_size 6 --threads 1 --output "$out/gen.jsonl" 2>/dev/null || fail "generate --output"
[[ $(cat "$out/gen.jsonl") == "$jsonl" ]] || fail "generate: stdout and --output answers differ"

# 7. chat: turns from stdin, answers on stdout, the conversation in the multi-turn template.
chat=$(printf 'hello there\n\nhow are you\n' | BEAVER_LOG=debug "$beaver" chat --model "$out/init" \
  --max_new_tokens 3 --threads 1 2>"$out/chat.err"); code=$?
[[ $code == 0 ]] || fail "chat exited $code: $(tail -3 "$out/chat.err")"
[[ $(wc -l <<<"$chat") == 2 ]] || fail "chat: expected 2 answer lines, got: $chat"
grep -qE 'chat: prompt [0-9]+ tokens: BEGINNING OF CONVERSATION: USER: hello there ASSISTANT:.*</s>USER: how are you ASSISTANT:$' \
  "$out/chat.err" || fail "chat: the second turn is not in the multi-turn template: $(grep 'chat: prompt' "$out/chat.err")"
cat "$out/chat.err" >>"$all_output"

# 8. No raw check expression in anything shown above.
if grep -qE 'check failed \(' "$all_output"; then
  fail "a raw check expression reached the user: $(grep -E 'check failed \(' "$all_output" | head -2)"
fi
expect 1 '--max_length must be >= 2, got 1' train sft --model_name_or_path "$out/init" \
  --train_datasets "$out/world/sft.json" --output_dir "$out/sft-bad" --max_length 1
refute 'check failed|a\.max_length'

cli_finish "all user-message checks passed"
