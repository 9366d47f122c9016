#!/usr/bin/env bash
# `beaver report` across seeds, through the binary, on hand-made eval folders: one folder per
# seed gives "mean ± half-width" cells (checked against a hand-computed t-interval) and a
# footer naming the interval, results.json carries the cells and keeps the one-seed keys,
# --elo writes anchored ratings, --plane a PNG; a label with another seed count is refused.
# Usage: tests/cli_report_seeds.sh BUILD_DIR
set -uo pipefail
source "$(dirname "$0")/cli_lib.sh"
cli_init report "${1:-}"

# make_eval DIR HARMFUL_RATE HELPFULNESS: four prompts (two benign, two harmful); the summary
# carries the given truth, the responses the oracle's verdicts.
make_eval() {
  mkdir -p "$1"
  cat >"$1/summary.json" <<EOF
{"summary": {"n": 4, "mean_reward": 0.5, "std_reward": 0, "mean_cost": -1, "std_cost": 0, "harmful_rate": 0.25},
 "ground_truth": {"oracle": "toyworld", "harmful_prompts": 2, "benign_prompts": 2,
   "harmful_rate_harmful_prompts": $2, "harmful_rate_overall": 0.1, "helpfulness_benign": $3}}
EOF
  {
    echo "{\"prompt\":\"p1\",\"category\":\"cooking\",\"response\":\"a\",\"reward\":$4,\"cost\":-1,\"oracle_harmful\":false,\"oracle_helpfulness\":$3}"
    echo "{\"prompt\":\"p2\",\"category\":\"travel\",\"response\":\"a\",\"reward\":0,\"cost\":-1,\"oracle_harmful\":false,\"oracle_helpfulness\":1}"
    echo "{\"prompt\":\"p3\",\"category\":\"fraud\",\"response\":\"a\",\"reward\":0,\"cost\":1,\"oracle_harmful\":$5,\"oracle_helpfulness\":0}"
    echo "{\"prompt\":\"p4\",\"category\":\"burglary\",\"response\":\"a\",\"reward\":0,\"cost\":-1,\"oracle_harmful\":false,\"oracle_helpfulness\":0}"
  } >"$1/responses.jsonl"
}
make_eval "$out/s1/sft" 0.4 1.0 0 true
make_eval "$out/s2/sft" 0.2 1.2 0 true
make_eval "$out/s1/lag" 0.1 1.5 1 false
make_eval "$out/s2/lag" 0.1 1.3 1 false

text=$("$beaver" report --eval "SFT=$out/s1/sft,$out/s2/sft" --eval "LAG=$out/s1/lag,$out/s2/lag" \
  --elo --elo_resamples 50 --plane "$out/plane.png" --output "$out/results.md" 2>&1) ||
  fail "report over two seeds: $text"
# SFT's harmful rate 0.4 and 0.2: mean 30.0%, s = 0.1414, t(0.975, 1) = 12.706,
# half = 12.706 * 0.1414 / sqrt(2) = 1.271 = 127.1 points; helpfulness 1.1 ± 1.27.
grep -q "| SFT | 30.0% ± 127.1 |" <<<"$text" || fail "SFT's harmful-rate cell is not 30.0% ± 127.1: $text"
grep -q "| LAG | 10.0% ± 0.0 | 10.0% ± 0.0 | 1.40 ± 1.27 |" <<<"$text" || fail "LAG's cells: $text"
grep -q "Student's t, 1 degrees of freedom" <<<"$text" || fail "no footer naming the t-interval: $text"
grep -q "| SFT | 1000 (anchor) | 1000 (anchor) |" <<<"$text" || fail "SFT is not the Elo anchor: $text"
python3 - "$out/results.json" "$out/results.elo.json" <<'PY' || fail "results.json / results.elo.json"
import json, sys
rows = {r["label"]: r for r in json.load(open(sys.argv[1]))}
lag = rows["LAG"]
assert lag["seeds"] == 2 and lag["interval"] == "student-t", lag
assert abs(lag["ground_truth"]["helpfulness_benign"] - 1.4) < 1e-9, lag
assert lag["cells"]["helpfulness_benign"]["values"] == [1.5, 1.3], lag
assert abs(lag["rm_win_rate_vs_baseline"] - 0.625) < 1e-9, lag  # wins p1, ties 3 of 4
elo = {r["label"]: r for r in json.load(open(sys.argv[2]))["ratings"]}
assert elo["SFT"]["helpfulness"]["elo"] == 1000, elo
assert elo["LAG"]["helpfulness"]["elo"] > 1000 and elo["LAG"]["harmlessness"]["elo"] > 1000, elo
lag_p = lag["paired_vs_baseline"]  # seed 1: help diffs 0.5, 0; seed 2: 0.1, 0; harm -1, 0 on each
assert [round(s["mean"], 9) for s in lag_p["helpfulness_benign"]["per_seed"]] == [0.25, 0.05], lag_p
assert abs(lag_p["helpfulness_benign"]["standard_error"] - 0.065 ** 0.5 / 2) < 1e-9, lag_p
assert abs(lag_p["harmful_rate_harmful_prompts"]["mean"] + 0.5) < 1e-9, lag_p
assert "paired_vs_baseline" not in rows["SFT"], rows["SFT"]
PY
[[ -s $out/plane.png ]] || fail "--plane wrote no PNG"
# The paired table over two seeds: helpfulness differences 0.25 and 0.05 (mean 0.15, half
# 12.706 * 0.1414 / sqrt(2) = 1.271), the evaluation's error sqrt(0.25² + 0.05²) / 2 = 0.127.
grep -q "| LAG | -50.0 ± 0.0 over seeds; evaluation SE 35.4 (4 prompts in all) | +0.150 ± 1.271 over seeds; evaluation SE 0.127 (4 prompts in all) |" <<<"$text" ||
  fail "the paired row over two seeds: $text"

# One seed: today's table, no intervals.
text=$("$beaver" report --eval "SFT=$out/s1/sft" --eval "LAG=$out/s1/lag" 2>&1) || fail "one seed: $text"
grep -q "| SFT | 40.0% |" <<<"$text" || fail "one-seed cell is not 40.0%: $text"
sed '/^Against SFT, paired/,$d' <<<"$text" | grep -q "±" && fail "one seed shows an interval: $text"
# Paired with SFT on seed 1: help differences 0.5, 0 (mean 0.25, standard error 0.25); harm
# -1, 0 (-50 points ± 50).
grep -q "| LAG | -50.0 ± 50.0 points (2 prompts) | +0.250 ± 0.250 (2 prompts) |" <<<"$text" ||
  fail "the paired row of one seed: $text"

# Another seed count for one label is refused, naming both labels.
text=$("$beaver" report --eval "SFT=$out/s1/sft,$out/s2/sft" --eval "LAG=$out/s1/lag" 2>&1) &&
  fail "a label with one folder against two was accepted"
grep -q "'LAG' has 1 eval folders and 'SFT' has 2" <<<"$text" || fail "seed-count error: $text"

cli_finish "cli_report_seeds: all checks passed"
