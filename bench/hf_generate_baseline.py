#!/usr/bin/env python3
"""HF transformers generate on the shapes of bench_model's gpu_llama7b cases (bench/model/gpu.cu).

A LLaMA-7B-shaped LlamaForCausalLM (H 4096, 32 layers, 32 heads of 128, I 11008, V 32000) with
random bf16 weights built directly on the GPU, SDPA attention, greedy decoding without EOS
(min_new_tokens = max_new_tokens), the same batch / prompt / new-token lengths as the Beaver
cases. Per case: one warm-up generate, then one timed generate for the whole length and one
with max_new_tokens = 1 (the prefill + first token); decode = the difference. Columns as
bench_model prints them: prefill tok/s, decode tok/s, bound tok/s (B / (weight bytes / the
device-to-device copy rate measured here)) and %bound.

With --beaver BENCH_MODEL.json (bench_model's --benchmark_out) it also prints the Beaver rows
and the ratio Beaver / HF of the decode rates.

Run on the GPU machine:
  python3 bench/hf_generate_baseline.py [--json OUT.json] [--beaver bench_model.json] [--cases ...]
"""
import argparse
import json
import re
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

CASES = {
    # name: (B, prompt, new tokens), the names of the Beaver cases
    "gpu_llama7b/generate_b1_p128_n384": (1, 128, 384),
    "gpu_llama7b/generate_b64_p128_n384": (64, 128, 384),
}


def copy_rate_gbps():
    """Device-to-device copy of 1 GiB, bytes read + written per second / 1e9 (median of 10)."""
    n = 1 << 30
    src = torch.empty(n, dtype=torch.uint8, device="cuda").fill_(0x5A)
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(10):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        dst.copy_(src)
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e-3)
    times.sort()
    return 2.0 * n / times[len(times) // 2] / 1e9


def build_model():
    cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                      max_position_embeddings=4096, rms_norm_eps=1e-5, bos_token_id=1,
                      eos_token_id=2, pad_token_id=0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        m = LlamaForCausalLM(cfg)  # HF's own random init (std 0.02), on the device
    torch.set_default_dtype(torch.float32)
    m.config._attn_implementation = "sdpa"
    return m.eval()


def timed_generate(m, ids, new):
    torch.cuda.synchronize()
    t = time.perf_counter()
    with torch.no_grad():
        m.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                   max_new_tokens=new, min_new_tokens=new, pad_token_id=0)
    torch.cuda.synchronize()
    return time.perf_counter() - t


def print_beaver(path, hf):
    """Beaver's rows (bench_model JSON) in the same columns, with decode ratio Beaver / HF."""
    with open(path) as f:
        rows = json.load(f).get("benchmarks", [])
    print(f"{'beaver case':40} {'prefill tok/s':>14} {'decode tok/s':>13} {'bound tok/s':>12} "
          f"{'%bound':>7} {'x HF':>6}")
    for r in rows:
        name = r.get("name", "")
        if not name.startswith("gpu_llama7b/") or "decode tok/s" not in r:
            continue
        case = re.sub(r"(/\d+)*/iterations.*$", "", name)  # drop the args and suffixes
        ratio = ""
        if case in hf and hf[case]["decode_tok_s"] > 0:
            ratio = f"{r['decode tok/s'] / hf[case]['decode_tok_s']:6.2f}"
        print(f"{case:40} {r['prefill tok/s']:14.0f} {r['decode tok/s']:13.1f} "
              f"{r['bound tok/s']:12.1f} {r['%bound']:6.1f}% {ratio:>6}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--beaver", help="bench_model JSON output to print beside the HF rows")
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    args = ap.parse_args()
    rate = copy_rate_gbps()
    m = build_model()
    weight_bytes = sum(p.numel() for p in m.parameters()) * 2
    g = torch.Generator(device="cuda").manual_seed(7)
    print(f"{'case':40} {'prefill tok/s':>14} {'decode tok/s':>13} {'bound tok/s':>12} "
          f"{'%bound':>7}")
    out = {"copy_gbps": rate, "weight_bytes": weight_bytes, "cases": {}}
    for name in args.cases:
        B, prompt, new = CASES[name]
        ids = torch.randint(3, 32000, (B, prompt), device="cuda", generator=g)
        timed_generate(m, ids, 8)  # warm-up
        t1 = timed_generate(m, ids, 1)
        tn = timed_generate(m, ids, new)
        prefill = B * prompt / t1
        decode = B * (new - 1) / max(tn - t1, 1e-9)
        bound = B * rate * 1e9 / weight_bytes
        print(f"{name:40} {prefill:14.0f} {decode:13.1f} {bound:12.1f} {100 * decode / bound:6.1f}%",
              flush=True)
        out["cases"][name] = {"prefill_tok_s": prefill, "decode_tok_s": decode,
                              "bound_tok_s": bound}
    if args.beaver:
        print_beaver(args.beaver, out["cases"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
