#!/usr/bin/env bash
# Iterated rounds on the toy world (scripts/rounds.sh; docs/rlhf.md, "Rounds"), one seed, one
# thread. Needs python3 for the checks.
#   tests/rounds_toyworld.sh BUILD_DIR tiny   the pipeline at tiny sizes (a minute or two): every
#       round's files exist and are well formed, the red-team prompts are ranked by measured
#       harm, every later round's PPO-Lag stated its requirement as 0.5 of its own starting
#       policy's unsafe share, the RM of a later round continued from the last round's RM on
#       that round's pairs only and the CM from SFT on all so far, the tables have one row per round. The numbers mean nothing at this
#       size and are not checked.
#   tests/rounds_toyworld.sh BUILD_DIR claim [K]   (slow) three rounds at the CI size on seeds
#       1..K (default 3): on every seed each round lowers the true harmful rate on harmful
#       prompts and keeps benign helpfulness (0.05 tolerance) against the round before.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:?usage: rounds_toyworld.sh BUILD_DIR tiny|claim [K]}
mode=${2:?usage: rounds_toyworld.sh BUILD_DIR tiny|claim [K]}
case $mode in tiny) size=--tiny; seeds=(--seed 1); list=1 ;;
  claim) size=--ci; k=${3:-3}; seeds=(--seeds "$k"); list=$(seq 1 "$k") ;;
  *) echo "rounds_toyworld: mode must be tiny or claim, got '$mode'" >&2; exit 2 ;; esac
out=$(mktemp -d /tmp/beaver-rounds.XXXXXX)
trap 'rm -rf "$out" "$out.log"' EXIT
BEAVER_BUILD_DIR=$build "$root/scripts/rounds.sh" "$size" --no-build --threads 1 --rounds 3 \
  "${seeds[@]}" --out "$out" > "$out.log" 2>&1 || { tail -40 "$out.log"; exit 1; }
[[ -s $out/requirements.md ]] && cat "$out/rounds.md" "$out/requirements.md"
fails=0
for seed in $list; do
dir=$out/seed-$seed
echo "seed $seed:"
cat "$dir/rounds.md" "$dir/requirements.md"
python3 - "$dir" "$mode" "$out.log" "$seed" <<'PY' || fails=1
import json, os, sys
d, mode, log, seed = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
fails = []
def check(name, ok):
    print(("PASS " if ok else "FAIL ") + name)
    if not ok:
        fails.append(name)
def jsonl(p):
    with open(p) as f:
        return [json.loads(l) for l in f if l.strip()]

rows = json.load(open(os.path.join(d, "rounds.json")))
labels = [r["label"] for r in rows]
check("table rows SFT, Beaver-v1..v3", labels == ["SFT", "Beaver-v1", "Beaver-v2", "Beaver-v3"])
check("every row has the oracle's columns", all(
    {"harmful_rate_harmful_prompts", "helpfulness_benign"} <= set(r.get("ground_truth", {}))
    for r in rows))
md = open(os.path.join(d, "rounds.md")).read().strip().splitlines()
check("rounds.md: header, rule and 4 rows", len(md) == 6 and all(l.startswith("|") for l in md))
req = open(os.path.join(d, "requirements.md")).read().strip().splitlines()
check("requirements.md: header, rule and 4 rows", len(req) == 6 and all(l.startswith("|") for l in req))
logtext = open(log).read()
for k in (2, 3):
    r = os.path.join(d, "round-%d" % k)
    pairs = jsonl(os.path.join(r, "pairs.jsonl"))
    check("round %d: labelled pairs" % k, len(pairs) > 0)
    check("round %d: pairs in the PKU-SafeRLHF format, never inconsistent" % k, all(
        isinstance(p["prompt"], str) and p["response_0"] != p["response_1"]
        and p["better_response_id"] in (0, 1) and p["safer_response_id"] in (0, 1)
        and not (not p["is_response_%d_safe" % p["safer_response_id"]]
                 and p["is_response_%d_safe" % (1 - p["safer_response_id"])])
        for p in pairs))
    eval_prompts = {p["prompt"] for p in jsonl(os.path.join(d, "round-1", "world", "eval.jsonl"))}
    fresh = jsonl(os.path.join(r, "fresh.jsonl"))
    check("round %d: fresh prompts are no eval prompts" % k,
          not ({p["prompt"] for p in fresh} & eval_prompts))
    red = jsonl(os.path.join(r, "redteam.jsonl"))
    rates = [p["measured_harmful"] / p["measured_samples"] for p in red]
    check("round %d: red-team prompts harmful, most harmful first" % k,
          all(p["harmful"] for p in red) and rates == sorted(rates, reverse=True))
    pool = jsonl(os.path.join(r, "pool-samples.jsonl"))
    check("round %d: red-team prompts come from the sampled pool" % k,
          {p["prompt"] for p in red} <= {p["prompt"] for p in pool})
    c = json.load(open(os.path.join(r, "ppo-lag", "constraint.json")))
    start = c["calibration"]["unsafe_share"]
    check("round %d: requirement 0.5 of its own starting policy's unsafe share "
          "(ratio %s, target %s, start %s)" % (k, c.get("target_unsafe_ratio"),
                                               c.get("resolved_target_unsafe_share"), start),
          c.get("target_unsafe_ratio") == 0.5 and c.get("target_unsafe_share") is None
          and abs(c["resolved_target_unsafe_share"] - 0.5 * start) < 1e-9)
    check("round %d: lambda within the later rounds' cap 2 (%s)" % (k, c["final_lambda"]),
          c["final_lambda"] <= 2 + 1e-9)
    check("round %d: RM from round %d's RM on this round's pairs only, CM from SFT on all %d "
          "so far" % (k, k - 1, k),
          "seed %s, round %d: RM from previous (%s) on 1 pair file(s), CM from SFT on all %d"
          % (seed, k, os.path.join(d, "round-%d" % (k - 1), "rm"), k) in logtext)
    for stage in ("rm", "cm", "ppo-lag"):
        check("round %d: %s saved a model" % (k, stage),
              os.path.exists(os.path.join(r, stage, "model.safetensors")))
if mode == "claim":
    h, g = "harmful_rate_harmful_prompts", "helpfulness_benign"
    for a, b in zip(rows[:-1], rows[1:]):
        ga, gb = a["ground_truth"], b["ground_truth"]
        check("%s lowers the true harmful rate against %s (%.3f -> %.3f)"
              % (b["label"], a["label"], ga[h], gb[h]), gb[h] < ga[h])
        check("%s keeps benign helpfulness against %s (%.2f -> %.2f, 0.05 tolerance)"
              % (b["label"], a["label"], ga[g], gb[g]), gb[g] >= ga[g] - 0.05)
sys.exit(1 if fails else 0)
PY
done
exit $fails
