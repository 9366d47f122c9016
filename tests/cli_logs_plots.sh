#!/usr/bin/env bash
# Logs and plots a person reads, through the binary: every subcommand takes --log_level (and
# warn silences the info lines), and `beaver plot` draws the comma-separated keys of one --y in
# one panel, one panel per --y.
# Usage: tests/cli_logs_plots.sh BUILD_DIR
set -uo pipefail
source "$(dirname "$0")/cli_lib.sh"
cli_init logs "${1:-}"

# --log_level on every command, in both spellings; a bad level is a usage error.
commands=(info generate toyworld plot report convert export "train sft" "train rm" "train cm"
          "train ppo-lag" "train ppo" "train ppo-shaping" "tokenizer train" init eval arena)
for c in "${commands[@]}"; do
  # shellcheck disable=SC2086  # $c is a command and its subcommand
  text=$("$beaver" $c --log_level warn --help 2>&1) || fail "beaver $c --log_level warn --help: $text"
  grep -q -- "--log_level" <<<"$text" || fail "beaver $c --help does not list --log_level"
done
"$beaver" info --log-level debug >/dev/null 2>&1 || fail "beaver info --log-level debug"
text=$("$beaver" info --log_level loud 2>&1); rc=$?
[[ $rc == 2 ]] || fail "beaver info --log_level loud exited $rc, expected 2: $text"

small=(--sft_examples 20 --preference_pairs 20 --ppo_prompts 10 --eval_prompts 10)
text=$("$beaver" toyworld -o "$out/w1" "${small[@]}" 2>&1) || fail "toyworld: $text"
grep -q "info\] toyworld: wrote" <<<"$text" || fail "toyworld logs no info line by default: $text"
text=$("$beaver" toyworld -o "$out/w2" "${small[@]}" --log_level warn 2>&1) || fail "toyworld: $text"
grep -q "info\]" <<<"$text" && fail "toyworld --log_level warn still logs info lines: $text"

# plot: two --y give two panels (260 pixels each), the first with two curves and a legend.
{
  for s in 1 2 3 4; do echo "{\"step\": $s, \"loss\": $((10 - s)), \"lr\": 0.00$s}"; done
  echo '{"step": 4, "eval_loss": 7.5}'
} >"$out/metrics.jsonl"
text=$("$beaver" plot -i "$out/metrics.jsonl" -o "$out/p.png" --y loss,eval_loss --y lr 2>&1) ||
  fail "plot: $text"
grep -q "(2 panels)" <<<"$text" || fail "plot --y loss,eval_loss --y lr did not draw 2 panels: $text"
# PNG height: IHDR bytes 20..23, big-endian.
height=$(od -An -tu1 -j20 -N4 "$out/p.png" 2>/dev/null | awk '{print $1*16777216 + $2*65536 + $3*256 + $4}')
[[ "$height" == 520 ]] || fail "plot of 2 panels is $height pixels high, expected 520"

cli_finish "cli_logs_plots: ok"
