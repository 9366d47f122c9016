#!/usr/bin/env python3
"""PyTorch baselines for bench_attention and bench_sampling, on the same shapes and columns.

Attention: torch.nn.functional.scaled_dot_product_attention, causal, bf16, through the flash
backend and the cuDNN backend (torch.nn.attention.sdpa_kernel), forward and backward, hd 128
(16 heads) and hd 64 (32 heads), batch x seq = 16k tokens, seq 1k..16k. FLOPs: forward
4*b*h*s^2*d halved for causal, backward 2.5x forward.
Decode: SDPA of one query per sequence over a bf16 KV cache (batch 8, 32 query / 8 KV heads,
hd 128, cache 4k..32k); GB/s over the minimum bytes (K and V once, q, out).
Sampling: the sort-based top-k / top-p sampler as commonly written in PyTorch (B=64, V=32000).
Times are the median of CUDA-event timings after a warm-up.

Usage: python3 bench/torch_attention_baseline.py [--reps 20]
"""
import argparse
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

TOKENS = 16384


def median_ms(fn, reps):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        stop = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def row(name, shape, ms, rate, unit):
    print(f"{name:<28} {shape:<40} {ms * 1e3:>12.1f} us {rate:>10.1f} {unit}")


def attention(reps):
    backends = [("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)]
    for d, nh in ((128, 16), (64, 32)):
        s = 1024
        while s <= 16384:
            b = TOKENS // s
            shape = f"B={b} S={s} nh={nh} d={d} causal"
            q, k, v = (torch.randn(b, nh, s, d, device="cuda", dtype=torch.bfloat16,
                                   requires_grad=True) for _ in range(3))
            dout = torch.randn(b, nh, s, d, device="cuda", dtype=torch.bfloat16)
            fwd_flops = 4.0 * b * nh * s * s * d / 2.0
            for label, backend in backends:
                try:
                    with sdpa_kernel(backend):
                        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                        fwd = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)
                        ms = median_ms(fwd, reps)
                        row(f"torch_sdpa_{label}_fwd", shape, ms, fwd_flops / ms / 1e9, "TFLOP/s")
                        bwd = lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)
                        ms = median_ms(bwd, reps)
                        row(f"torch_sdpa_{label}_bwd", shape, ms, 2.5 * fwd_flops / ms / 1e9,
                            "TFLOP/s")
                except RuntimeError as e:  # backend not available for this shape / build
                    print(f"torch_sdpa_{label:<19} {shape:<40} unavailable: {str(e)[:60]}")
            del q, k, v, dout
            torch.cuda.empty_cache()
            s *= 2


def decode(reps):
    b, nh, nkv, d = 8, 32, 8, 128
    for length in (4096, 8192, 16384, 32768):
        q = torch.randn(b, nh, 1, d, device="cuda", dtype=torch.bfloat16)
        kc = torch.randn(b, nkv, length, d, device="cuda", dtype=torch.bfloat16)
        vc = torch.randn(b, nkv, length, d, device="cuda", dtype=torch.bfloat16)
        fn = lambda: F.scaled_dot_product_attention(q, kc, vc, enable_gqa=True)
        ms = median_ms(fn, reps)
        nbytes = 2 * b * length * nkv * d * 2 + 2 * b * nh * d * 2
        row("torch_sdpa_decode", f"B=8 nh=32 nkv=8 d=128 cache={length}", ms, nbytes / ms / 1e6,
            "GB/s")
        del q, kc, vc
        torch.cuda.empty_cache()


def sort_sample(logits, top_k, top_p, gen):
    probs_logits = logits.float()
    if top_k > 0:
        kth = torch.topk(probs_logits, top_k, dim=-1).values[:, -1:]
        probs_logits = probs_logits.masked_fill(probs_logits < kth, float("-inf"))
    sorted_logits, idx = torch.sort(probs_logits, descending=True, dim=-1)
    probs = torch.softmax(sorted_logits, dim=-1)
    cum = torch.cumsum(probs, dim=-1)
    remove = cum - probs >= top_p
    probs = probs.masked_fill(remove, 0.0)
    choice = torch.multinomial(probs, 1, generator=gen)
    return idx.gather(-1, choice)


def sampling(reps):
    b, vocab = 64, 32000
    gen = torch.Generator(device="cuda").manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        logits = (torch.rand(b, vocab, device="cuda") * 16 - 8).to(dtype)
        for top_k in (50, 0):
            fn = lambda: sort_sample(logits, top_k, 0.9, gen)
            ms = median_ms(fn, reps)
            nbytes = b * vocab * logits.element_size()
            name = "bf16" if dtype == torch.bfloat16 else "f32"
            row("torch_sort_sample", f"B=64 V=32000 {name} top_k={top_k} top_p=0.9", ms,
                nbytes / ms / 1e6, "GB/s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("torch_attention_baseline: no CUDA device, nothing to measure")
        return
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    print(f"{'name':<28} {'shape':<40} {'time':>15} {'rate':>10}")
    attention(args.reps)
    decode(args.reps)
    sampling(args.reps)


if __name__ == "__main__":
    main()
