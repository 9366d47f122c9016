#!/usr/bin/env python3
"""Beaver against PyTorch on the CPU, side by side in one run: bench_model's CPU cases
(bench/model/cpu.cpp) and the same work with a transformers LlamaForCausalLM.

Same configuration as bench_model: hidden 256, 4 layers, 4 heads of 64, intermediate 688,
vocabulary 4000, weights U(-0.05, 0.05), norm weights 1, fp32.
  train   batch 4 x 128 random tokens: forward + next-token cross-entropy + full backward
          (PyTorch: model(input_ids, labels=input_ids).loss.backward(), grads set to None
          before each step; Beaver accumulates into its gradient arena, which costs the same)
  gen     batch 1 and 8, prompt 32, 32 new tokens, greedy, no EOS (HF generate with
          min_new_tokens = max_new_tokens = 32; Beaver's InferenceEngine::generate)
Threads: 1 and 2 (torch.set_num_threads; Beaver's Context::cpu(threads)).

The two engines alternate round by round (Beaver's cases, then PyTorch's, --rounds times), so
both see the same machine load; each round times every case --iters times after a warm-up.
The table gives per case the median over all timed iterations of both engines, the spread
(min-max of the per-round medians) and the ratio PyTorch / Beaver (above 1: Beaver faster).

Usually run through bench/cpu_vs_torch.sh, which finds or creates the virtual environment.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

H, L, NH, I, V = 256, 4, 4, 688, 4000
TRAIN_B, TRAIN_S = 4, 128
PROMPT, NEW = 32, 32


def case_names(threads):
    out = []
    for t in threads:
        out.append(("train", f"cpu_train_step/seq:{TRAIN_S}/recompute:0/threads:{t}", t, TRAIN_B))
        for b in (1, 8):
            out.append(("gen", f"cpu_generate/batch:{b}/threads:{t}", t, b))
    return out


def build_torch_model(attn):
    cfg = LlamaConfig(hidden_size=H, intermediate_size=I, num_hidden_layers=L,
                      num_attention_heads=NH, num_key_value_heads=NH, head_dim=H // NH,
                      vocab_size=V, max_position_embeddings=1024, rms_norm_eps=1e-5,
                      tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
                      pad_token_id=0, attn_implementation=attn)
    m = LlamaForCausalLM(cfg)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name:
                p.fill_(1.0)
            else:
                p.uniform_(-0.05, 0.05, generator=g)
    return m


def timed(fn, iters):
    """Seconds of each of `iters` calls of fn, after one warm-up call."""
    fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def torch_train_times(m, iters):
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, V, (TRAIN_B, TRAIN_S), generator=g)
    m.train()

    def step():
        m.zero_grad(set_to_none=True)
        m(input_ids=ids, labels=ids).loss.backward()

    return timed(step, iters)


def torch_gen_times(m, batch, iters):
    m.eval()
    ids = torch.tensor([[3 + 7 * b + i for i in range(PROMPT)] for b in range(batch)])
    mask = torch.ones_like(ids)

    def gen():
        with torch.no_grad():
            m.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                       max_new_tokens=NEW, min_new_tokens=NEW, eos_token_id=None,
                       pad_token_id=0)

    return timed(gen, iters)


def beaver_round(bench_model, cases, iters):
    """One bench_model run over the cases, one iteration per repetition (a step is long enough
    to time alone): {name: [seconds per iteration] * iters}."""
    names = "|".join("^" + n + "$" for _, n, _, _ in cases)
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    try:
        run = subprocess.run([bench_model, f"--benchmark_filter={names}",
                              "--benchmark_min_time=0.001", f"--benchmark_repetitions={iters}",
                              f"--benchmark_out={out}", "--benchmark_out_format=json"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if run.returncode != 0:
            sys.exit(f"cpu_vs_torch: {bench_model} failed (exit {run.returncode}):\n"
                     + run.stderr[-4000:])
        with open(out) as fh:
            data = json.load(fh)
    finally:
        os.unlink(out)
    res = {}
    unit = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    for b in data["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        res.setdefault(b["run_name"], []).append(b["real_time"] * unit[b["time_unit"]])
    missing = [n for _, n, _, _ in cases if n not in res]
    if missing:
        sys.exit(f"cpu_vs_torch: {bench_model} ran no case named {', '.join(missing)}")
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench-model", required=True, help="path to the bench_model binary")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    ap.add_argument("--iters", type=int, default=5, help="timed iterations per case per round")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"],
                    help="PyTorch attention implementation (default sdpa)")
    ap.add_argument("--json", help="write the per-round timings here")
    a = ap.parse_args()
    if not os.access(a.bench_model, os.X_OK):
        sys.exit(f"cpu_vs_torch: bench_model binary '{a.bench_model}' is missing or not "
                 "executable (build it: cmake --build build --target bench_model)")
    threads = [int(t) for t in a.threads.split(",")]
    cases = case_names(threads)
    m = build_torch_model(a.attn)
    rounds = {n: {"beaver": [], "torch": []} for _, n, _, _ in cases}
    for r in range(a.rounds):
        bv = beaver_round(a.bench_model, cases, a.iters)
        for kind, n, t, b in cases:
            rounds[n]["beaver"].append(bv[n])
            torch.set_num_threads(t)
            ts = torch_train_times(m, a.iters) if kind == "train" else torch_gen_times(m, b, a.iters)
            rounds[n]["torch"].append(ts)
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)

    print(f"torch {torch.__version__}, attention {a.attn}; {a.rounds} rounds x {a.iters} "
          "iterations; times in ms: median (spread of the round medians)")
    print(f"{'case':44s} {'beaver':>22s} {'pytorch':>22s} {'torch/beaver':>12s}")
    for _, n, _, _ in cases:
        row = []
        for eng in ("beaver", "torch"):
            allt = [x for rr in rounds[n][eng] for x in rr]
            meds = [statistics.median(rr) for rr in rounds[n][eng]]
            row.append((statistics.median(allt) * 1e3, min(meds) * 1e3, max(meds) * 1e3))
        cell = lambda v: f"{v[0]:8.1f} ({v[1]:.1f}-{v[2]:.1f})"
        print(f"{n:44s} {cell(row[0]):>22s} {cell(row[1]):>22s} {row[1][0] / row[0][0]:11.2f}x")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"torch": torch.__version__, "attn": a.attn, "rounds": rounds}, fh)


if __name__ == "__main__":
    main()
