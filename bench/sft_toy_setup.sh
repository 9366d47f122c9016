# Sourced (not run) by the scale-out benches (bench/scale_out_sft.sh, bench/zero_prefetch.sh,
# bench/zero3_generation.sh): takes BUILD_DIR and STEPS from the bench's arguments (defaults build
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
# side_by_side NAME_A RUN_A NAME_B RUN_B UNIT: runs `RUN_A OUT` and `RUN_B OUT` (each prints one
# figure and leaves OUT/model.safetensors in $work) twice in alternation (a1, b1, a2, b2) so that
# a change of the machine's load falls on both; prints each figure with the load average
# before it, requires the final models of a1 and b1 to be identical bytes, and prints the
# ratio of the means A / B.
side_by_side() {
  local na=$1 ra=$2 nb=$3 rb=$4 unit=$5 load round
  local -a a=() b=()
  for round in 1 2; do
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    a+=("$("$ra" "a$round")")
    printf '  %-12s %s %s (load average before: %s)\n' "$na:" "${a[-1]}" "$unit" "$load"
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    b+=("$("$rb" "b$round")")
    printf '  %-12s %s %s (load average before: %s)\n' "$nb:" "${b[-1]}" "$unit" "$load"
  done
  cmp -s "$work/a1/model.safetensors" "$work/b1/model.safetensors" &&
    echo "  final models of $na and $nb: identical bytes" ||
    { echo "$bench_name: the final models of $na and $nb differ" >&2; exit 1; }
  awk -v a="${a[0]}" -v b="${a[1]}" -v c="${b[0]}" -v d="${b[1]}" -v r="$na / $nb" \
    'BEGIN { printf "  ratio %s (means of two runs each): %.2f\n", r, (a + b) / (c + d) }'
}
