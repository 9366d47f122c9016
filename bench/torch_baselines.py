#!/usr/bin/env python3
"""PyTorch baselines for Beaver's GPU bench cases, on the GPU machine.

Every case has the same name as the Beaver case it is compared with (bench/<family>/gpu.cu,
e.g. gpu_rmsnorm_fwd/bf16_T8192_H4096), the same shapes and dtypes, and one or more PyTorch
variants: "eager" (the ops as HF transformers writes them) and, where PyTorch has one, a fused
op ("fused": F.rms_norm, F.cross_entropy, AdamW(fused=True), ...). Times are CUDA-event medians
over many calls after warm-up, with inputs rotated among copies that exceed the L2 cache where
the inputs are small. Prints one row per case and variant (name, variant, time us, GB/s or
TFLOP/s with the same minimum byte/FLOP counts as the Beaver case), and with --json writes
{"cases": {name: {variant: time_us}}} for bench/summarize.py.
"""
import argparse
import json
import sys

import torch
import torch.nn.functional as F

DEV = "cuda"
BF16, F32 = torch.bfloat16, torch.float32


def median_us(fn, warmup=3, reps=20):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3)
    times.sort()
    return times[len(times) // 2]


def rotations(bytes_per_set):
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    return max(1, min(8, int(3 * l2 / max(bytes_per_set, 1)) + 1))


def rand(shape, dtype, lo=-1.0, hi=1.0):
    return (torch.rand(shape, device=DEV, dtype=F32) * (hi - lo) + lo).to(dtype)


class Rotating:
    """Cycles through copies of the inputs so that repeated calls do not run from L2."""

    def __init__(self, make, bytes_per_set):
        self.sets = [make() for _ in range(rotations(bytes_per_set))]
        self.i = 0

    def next(self):
        s = self.sets[self.i % len(self.sets)]
        self.i += 1
        return s


RESULTS = {}
ROWS = []


def record(name, variant, us, nbytes=None, flops=None):
    RESULTS.setdefault(name, {})[variant] = us
    rate = f"{nbytes / us / 1e3:.0f} GB/s" if nbytes else f"{flops / us / 1e6:.1f} TFLOP/s"
    ROWS.append((name, variant, us, rate))


CASES = []


def case(fn):
    """Registers a family's cases; main() runs them, a failing one does not stop the others."""
    CASES.append(fn)
    return fn


def size(dtype):
    return torch.tensor([], dtype=dtype).element_size()


# ---- cases ------------------------------------------------------------------------------------
@case
def rmsnorm():
    eps = 1e-5
    for dt, T, H in ((BF16, 8192, 4096), (F32, 8192, 4096), (BF16, 1, 4096)):
        tag = f"{'bf16' if dt == BF16 else 'f32'}_T{T}_H{H}"
        es = size(dt)
        nbytes = 4 * T * H * es + H * es + 4 * T
        w = rand((H,), dt, 0.5, 1.5)
        rot = Rotating(lambda: (rand((T, H), dt), rand((T, H), dt)), nbytes)

        def eager():
            x, r = rot.next()
            h = x + r
            hf = h.float()
            return w * (hf * torch.rsqrt(hf.pow(2).mean(-1, keepdim=True) + eps)).to(dt), h

        def fused():
            x, r = rot.next()
            h = x + r
            return F.rms_norm(h, (H,), w, eps), h

        record(f"gpu_rmsnorm_fwd/{tag}", "eager", median_us(eager), nbytes)
        if hasattr(F, "rms_norm"):
            record(f"gpu_rmsnorm_fwd/{tag}", "fused", median_us(fused), nbytes)
        if T > 1 and hasattr(F, "rms_norm"):
            bbytes = 4 * T * H * es + H * (es + 4) + 4 * T
            h = rand((T, H), dt).requires_grad_()
            wg = w.clone().requires_grad_()
            y = F.rms_norm(h, (H,), wg, eps)
            dy = rand((T, H), dt)
            record(f"gpu_rmsnorm_bwd/{tag}", "fused",
                   median_us(lambda: torch.autograd.grad(y, (h, wg), dy, retain_graph=True)),
                   bbytes)


@case
def rope():
    for dt, T, nh, d in ((BF16, 8192, 32, 128), (F32, 8192, 32, 128)):
        tag = f"{'bf16' if dt == BF16 else 'f32'}_T{T}_nh{nh}_d{d}"
        nbytes = 2 * T * nh * d * size(dt) + 4 * T
        inv = 1.0 / (10000 ** (torch.arange(0, d, 2, device=DEV, dtype=F32) / d))
        pos = torch.randint(0, 4096, (T,), device=DEV)
        ang = pos.float()[:, None] * inv[None, :]
        emb = torch.cat((ang, ang), -1)
        cos, sin = emb.cos().to(dt)[:, None, :], emb.sin().to(dt)[:, None, :]
        rot = Rotating(lambda: rand((T, nh, d), dt), nbytes)

        def rotate_half(x):
            return torch.cat((-x[..., d // 2:], x[..., : d // 2]), -1)

        def eager():
            q = rot.next()
            return q * cos + rotate_half(q) * sin

        record(f"gpu_rope_apply/{tag}", "eager", median_us(eager), nbytes)


@case
def swiglu():
    for dt, T, I, bwd in ((BF16, 8192, 11008, False), (BF16, 8192, 11008, True),
                          (F32, 8192, 11008, False)):
        tag = f"{'bwd' if bwd else 'fwd'}_{'bf16' if dt == BF16 else 'f32'}_T{T}_I{I}"
        nbytes = (5 if bwd else 3) * T * I * size(dt)
        if not bwd:
            rot = Rotating(lambda: (rand((T, I), dt, -4, 4), rand((T, I), dt)), nbytes)

            def eager():
                g, u = rot.next()
                return F.silu(g) * u

            record(f"gpu_swiglu/{tag}", "eager", median_us(eager), nbytes)
        else:
            g = rand((T, I), dt, -4, 4).requires_grad_()
            u = rand((T, I), dt).requires_grad_()
            y = F.silu(g) * u
            dy = rand((T, I), dt)
            record(f"gpu_swiglu/{tag}", "eager",
                   median_us(lambda: torch.autograd.grad(y, (g, u), dy, retain_graph=True)),
                   nbytes)


@case
def logprob():
    for dt, T, V, bwd in ((BF16, 4096, 32000, False), (BF16, 4096, 32000, True),
                          (BF16, 4096, 128256, False), (BF16, 4096, 128256, True),
                          (F32, 2048, 32000, False)):
        tag = f"{'bwd' if bwd else 'fwd'}_{'bf16' if dt == BF16 else 'f32'}_T{T}_V{V}"
        name = f"gpu_logprob/{tag}"
        nbytes = (2 if bwd else 1) * T * V * size(dt) + 12 * T
        logits = rand((T, V), dt, -8, 8)
        tgt = torch.randint(0, V, (T,), device=DEV)
        if not bwd:
            record(name, "eager", median_us(
                lambda: torch.log_softmax(logits.float(), -1).gather(-1, tgt[:, None])), nbytes)
            record(name, "fused", median_us(
                lambda: F.cross_entropy(logits, tgt, reduction="none")), nbytes)
        else:
            lg = logits.clone().requires_grad_()
            loss = F.cross_entropy(lg, tgt, reduction="none")
            dl = rand((T,), F32).to(loss.dtype)
            record(name, "fused",
                   median_us(lambda: torch.autograd.grad(loss, lg, dl, retain_graph=True)), nbytes)
            del lg, loss
        del logits
        torch.cuda.empty_cache()


@case
def embedding():
    for dt, T, V, H in ((BF16, 8192, 32000, 4096), (F32, 8192, 32000, 4096)):
        tag = f"{'bf16' if dt == BF16 else 'f32'}_T{T}_V{V}_H{H}"
        table = rand((V, H), dt)
        nbytes = 2 * T * H * size(dt) + 4 * T
        rot = Rotating(lambda: torch.randint(0, V, (T,), device=DEV), nbytes)
        record(f"gpu_embedding_fwd/{tag}", "eager",
               median_us(lambda: F.embedding(rot.next(), table)), nbytes)
        if dt == BF16:
            ids = torch.randint(0, V, (T,), device=DEV)
            dout = rand((T, H), dt)
            bbytes = T * H * size(dt) + V * H * 4 + 4 * T
            # The dense embedding backward (sort + segmented sum), in fp32 like Beaver's dtable.
            record(f"gpu_embedding_bwd/{tag}", "eager", median_us(
                lambda: torch.ops.aten.embedding_dense_backward(dout.float(), ids, V, -1, False)),
                bbytes)


@case
def gemm():
    shapes = (("fwd_bf16_T4096_4096x4096", BF16, BF16, 4096, 4096, 4096, False, True),
              ("fwd_bf16_T4096_11008x4096", BF16, BF16, 4096, 11008, 4096, False, True),
              ("dgrad_bf16_T4096_4096x11008", BF16, BF16, 4096, 4096, 11008, False, False),
              ("wgrad_bf16_f32out_11008x4096_T4096", BF16, F32, 11008, 4096, 4096, True, False),
              ("fwd_f32_T2048_4096x4096", F32, F32, 2048, 4096, 4096, False, True))
    torch.backends.cuda.matmul.allow_tf32 = False
    for tag, ab, c, M, N, K, ta, tb in shapes:
        a = rand((K, M) if ta else (M, K), ab)
        b = rand((N, K) if tb else (K, N), ab)
        A = a.t() if ta else a
        B = b.t() if tb else b
        fn = (lambda: torch.matmul(A, B)) if c == ab else (lambda: torch.matmul(A, B).float())
        record(f"gpu_gemm/{tag}", "eager", median_us(fn), flops=2 * M * N * K)


@case
def adamw():
    n = 256 << 20
    for tag, gdt, lowp in (("bf16grad_bf16copy_256M", BF16, True), ("f32grad_256M", F32, False)):
        p = torch.nn.Parameter(rand((n,), F32))
        p.grad = rand((n,), F32, -0.01, 0.01)  # fused AdamW needs grads of the params' dtype
        nbytes = n * (16 + size(gdt) + (2 if lowp else 0))
        for variant, kw in (("fused", {"fused": True}), ("foreach", {"foreach": True})):
            opt = torch.optim.AdamW([p], lr=1e-5, weight_decay=0.01, **kw)
            low = torch.empty(n, device=DEV, dtype=BF16)

            def step():
                opt.step()
                if lowp:
                    low.copy_(p.detach())

            record(f"gpu_adamw/{tag}", variant, median_us(step, reps=10), nbytes)
            del opt
        del p
        torch.cuda.empty_cache()


@case
def gradnorm():
    total, count = 256 << 20, 291
    for tag, dt, scale in (("norm_bf16_256M_291t", BF16, False), ("norm_f32_256M_291t", F32, False),
                           ("scale_bf16_256M_291t", BF16, True)):
        grads = [rand((total // count,), dt, -1e-3, 1e-3) for _ in range(count)]
        nbytes = (total // count) * count * size(dt) * (2 if scale else 1)
        if scale:
            coef = torch.tensor(0.999, device=DEV)
            record(f"gpu_gradnorm/{tag}", "foreach",
                   median_us(lambda: torch._foreach_mul_(grads, coef)), nbytes)
        else:
            def norm():
                n = torch.linalg.vector_norm(
                    torch.stack(torch._foreach_norm(grads, 2.0, dtype=F32)), 2.0)
                return torch.clamp(1.0 / (n + 1e-6), max=1.0)

            record(f"gpu_gradnorm/{tag}", "foreach", median_us(norm), nbytes)
        del grads
        torch.cuda.empty_cache()


@case
def elementwise():
    n = 64 << 20
    src32, src16 = rand((n,), F32), rand((n,), BF16)
    record("gpu_convert/f32_to_bf16_64M", "eager", median_us(lambda: src32.to(BF16)), n * 6)
    record("gpu_convert/bf16_to_f32_64M", "eager", median_us(lambda: src16.to(F32)), n * 6)
    a, b = rand((n,), BF16), rand((n,), BF16)
    record("gpu_add/bf16_64M", "eager", median_us(lambda: a + b), n * 6)
    record("gpu_axpy/bf16_64M", "eager", median_us(lambda: b.add_(a, alpha=0.0)), n * 6)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write {cases: {name: {variant: us}}} here")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("torch_baselines: no CUDA device, nothing to time")
        return 0
    for fn in CASES:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - report any failure and go on
            print(f"baseline {fn.__name__} failed: {type(e).__name__}: {e}", file=sys.stderr)
        torch.cuda.empty_cache()
    print(f"# {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    print(f"{'case':52} {'variant':>8} {'time us':>10} {'rate':>14}")
    for name, variant, us, rate in ROWS:
        print(f"{name:52} {variant:>8} {us:10.1f} {rate:>14}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                       "cases": RESULTS}, f, indent=1)
    return 0 if ROWS else 1


if __name__ == "__main__":
    sys.exit(main())
