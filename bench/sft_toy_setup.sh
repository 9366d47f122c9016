# Sourced (not run) by the SFT throughput benches (bench/scale_out_sft.sh,
# bench/zero_prefetch.sh): takes BUILD_DIR and STEPS from the bench's arguments (defaults build
# and 8), checks the beaver binary and mpirun, and makes a toy-world SFT set, a tokenizer and a
# small random LLaMA (hidden 128, 4 layers) in a temporary folder removed at exit. Sets B (the
# binary), steps and work (the folder: world/, tok/, init/), and `sft_flags`, the flags every
# run shares (--train_batch_size 8, max_length 128, one epoch of $steps steps).
# Usage: source "$(dirname "$0")/sft_toy_setup.sh" NAME "$@"   (NAME prefixes its errors)
bench_name=$1
build=${2:-build}
steps=${3:-8}
B=$(cd "$build" && pwd)/beaver
[[ -x "$B" ]] || { echo "$bench_name: no beaver binary in $build" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "$bench_name: mpirun not found (openmpi-bin)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
q() { "$@" >"$work/setup.log" 2>&1 || { cat "$work/setup.log" >&2; exit 1; }; }
q "$B" toyworld --output "$work/world" --seed 3 --sft-examples 400 --preference-pairs 20 \
  --ppo-prompts 10 --eval-prompts 10
q "$B" tokenizer train --input "$work/world/corpus.txt" --vocab-size 300 --output "$work/tok"
q "$B" init --hidden 128 --layers 4 --heads 4 --kv-heads 2 --intermediate 384 \
  --vocab-from "$work/tok" --max-position 128 --seed 5 --output "$work/init"
sft_flags=(--model_name_or_path "$work/init" --train_datasets "$work/world/sft.json"
           --max_length 128 --epochs 1 --train_batch_size 8 --gradient_accumulation_steps 1
           --max_steps "$steps")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive
# The last tokens/s figure of a run's log $1.
tokens_per_s() { grep -oE '\(([0-9]+) tokens/s\)' "$1" | tail -1 | grep -oE '[0-9]+'; }
