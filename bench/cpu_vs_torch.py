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

How it is made fair:
  * every engine runs in a fresh child process per repetition and thread count (no state, warm
    caches or thread pools carried from the other engine or an earlier repetition);
  * the order alternates: odd repetitions run Beaver first, even ones PyTorch first;
  * both children get the same OMP_WAIT_POLICY (--wait-policy, default passive) and
    OMP_NUM_THREADS, set in the environment before the child starts (libgomp and PyTorch's
    OpenMP read them at load time). With the default active spin-wait, a 2-thread step on a
    machine where another job holds a core runs several times slower, for both engines;
  * each case runs one untimed warm-up (bench_model does its own, PyTorch's child here), then
    --iters timed iterations, each timed alone;
  * the load average is printed before and after, with a warning above 1.5 (a busy machine
    makes the ratio unreliable, the 2-thread one most).
The table (markdown, ready to paste) gives per case the median over all timed iterations of
each engine, the spread (min-max of the per-repetition medians) and the ratio PyTorch / Beaver
(above 1: Beaver faster), then the median process CPU time per iteration of each engine and its
ratio: other jobs on the machine inflate that far less than the wall time, so at 1 thread it is
the steadier figure under load (at 2 threads it also counts any time a thread waits busily).
--json writes every iteration's wall and CPU time.

Usually run through bench/cpu_vs_torch.sh, which finds or creates the virtual environment.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

H, L, NH, I, V = 256, 4, 4, 688, 4000
TRAIN_B, TRAIN_S = 4, 128
PROMPT, NEW = 32, 32
LOAD_WARN = 1.5


def case_names(t):
    """(kind, bench_model case name, batch) of the cases at t threads."""
    out = [("train", f"cpu_train_step/seq:{TRAIN_S}/recompute:0/threads:{t}", TRAIN_B)]
    for b in (1, 8):
        out.append(("gen", f"cpu_generate/batch:{b}/threads:{t}", b))
    return out


# ---- PyTorch child ------------------------------------------------------------------------------

def torch_child(threads, iters, attn):
    """Runs in its own process (OMP_* already in the environment); prints
    {case name: [seconds per iteration]} as JSON on stdout."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(threads)
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

    def timed(fn):
        fn()  # warm-up, untimed
        ts, cs = [], []
        for _ in range(iters):
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
            cs.append(time.process_time() - c0)
        return ts, cs

    res, cpu = {}, {}
    for kind, name, b in case_names(threads):
        if kind == "train":
            ids = torch.randint(0, V, (TRAIN_B, TRAIN_S), generator=torch.Generator().manual_seed(2))
            m.train()

            def step():
                m.zero_grad(set_to_none=True)
                m(input_ids=ids, labels=ids).loss.backward()

            res[name], cpu[name] = timed(step)
        else:
            m.eval()
            ids = torch.tensor([[3 + 7 * r + i for i in range(PROMPT)] for r in range(b)])
            mask = torch.ones_like(ids)

            def gen():
                with torch.no_grad():
                    m.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                               max_new_tokens=NEW, min_new_tokens=NEW, eos_token_id=None,
                               pad_token_id=0)

            res[name], cpu[name] = timed(gen)
    json.dump({"torch": torch.__version__, "times": res, "cpu": cpu}, sys.stdout)


# ---- parent -------------------------------------------------------------------------------------

def child_env(threads, wait_policy):
    env = dict(os.environ)
    env["OMP_WAIT_POLICY"] = wait_policy
    env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_beaver(bench_model, threads, iters, wait_policy):
    """One bench_model process over the cases at `threads`, one iteration per repetition (a step
    is long enough to time alone): ({name: [wall seconds per iteration] * iters}, the same for
    the process CPU seconds)."""
    cases = case_names(threads)
    # bench_model's cases carry the suffix /process_time/real_time (their timing modes).
    names = "|".join("^" + n + "(/process_time)?(/real_time)?$" for _, n, _ in cases)
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    try:
        run = subprocess.run([bench_model, f"--benchmark_filter={names}",
                              "--benchmark_min_time=0.001", f"--benchmark_repetitions={iters}",
                              f"--benchmark_out={out}", "--benchmark_out_format=json"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env=child_env(threads, wait_policy))
        if run.returncode != 0:
            sys.exit(f"cpu_vs_torch: {bench_model} failed (exit {run.returncode}):\n"
                     + run.stderr[-4000:])
        with open(out) as fh:
            data = json.load(fh)
    finally:
        os.unlink(out)
    res, cpu = {}, {}
    unit = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    for b in data["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        name = b["run_name"].replace("/process_time", "").replace("/real_time", "")
        res.setdefault(name, []).append(b["real_time"] * unit[b["time_unit"]])
        cpu.setdefault(name, []).append(b["cpu_time"] * unit[b["time_unit"]])
    missing = [n for _, n, _ in cases if n not in res]
    if missing:
        sys.exit(f"cpu_vs_torch: {bench_model} ran no case named {', '.join(missing)}")
    return res, cpu


def run_torch(threads, iters, attn, wait_policy):
    run = subprocess.run([sys.executable, os.path.abspath(__file__), "--child-torch",
                          "--threads", str(threads), "--iters", str(iters), "--attn", attn],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=child_env(threads, wait_policy))
    if run.returncode != 0:
        sys.exit(f"cpu_vs_torch: the PyTorch child failed (exit {run.returncode}):\n"
                 + run.stderr[-4000:])
    return json.loads(run.stdout)


def loadavg():
    return os.getloadavg()[0]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def git_commit():
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench-model", help="path to the bench_model binary")
    ap.add_argument("--reps", "--rounds", dest="reps", type=int, default=4,
                    help="repetitions, each a fresh process per engine, the order alternating "
                         "(default 4)")
    ap.add_argument("--iters", type=int, default=5, help="timed iterations per case per repetition")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"],
                    help="PyTorch attention implementation (default sdpa)")
    ap.add_argument("--wait-policy", default="passive", choices=["passive", "active"],
                    help="OMP_WAIT_POLICY of both engines' processes (default passive)")
    ap.add_argument("--json", help="write every iteration's time here")
    ap.add_argument("--child-torch", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child_torch:
        torch_child(int(a.threads), a.iters, a.attn)
        return
    if not a.bench_model or not os.access(a.bench_model, os.X_OK):
        sys.exit(f"cpu_vs_torch: bench_model binary '{a.bench_model}' is missing or not "
                 "executable (build it: cmake --build build --target bench_model)")
    if a.reps < 1 or a.iters < 1:
        sys.exit("cpu_vs_torch: --reps and --iters must be at least 1")
    threads = [int(t) for t in a.threads.split(",")]
    started = datetime.datetime.now(datetime.timezone.utc)
    commit = git_commit()  # at the start: the tree may change while the benchmark runs
    load0 = loadavg()
    if load0 > LOAD_WARN:
        print(f"cpu_vs_torch: warning: load average {load0:.2f} is above {LOAD_WARN}: other jobs "
              "share the cores, so the times and the ratios (the 2-thread ones most) are not "
              "final", file=sys.stderr)
    times = {}   # case -> engine -> [per-repetition list of wall seconds]
    cpus = {}    # the same for the process CPU seconds
    loads = []
    torch_version = "?"
    for r in range(a.reps):
        order = ("beaver", "torch") if r % 2 == 0 else ("torch", "beaver")
        for t in threads:
            for eng in order:
                loads.append(loadavg())
                if eng == "beaver":
                    got, got_cpu = run_beaver(a.bench_model, t, a.iters, a.wait_policy)
                else:
                    child = run_torch(t, a.iters, a.attn, a.wait_policy)
                    torch_version, got, got_cpu = child["torch"], child["times"], child["cpu"]
                for n, ts in got.items():
                    times.setdefault(n, {"beaver": [], "torch": []})[eng].append(ts)
                    cpus.setdefault(n, {"beaver": [], "torch": []})[eng].append(got_cpu[n])
        print(f"repetition {r + 1}/{a.reps} done ({'/'.join(order)} first), load average "
              f"{loadavg():.2f}", file=sys.stderr)
    load1 = loadavg()
    peak = max(loads + [load0, load1])

    print(f"{started:%Y-%m-%d %H:%M} UTC, {cpu_model()}, {os.cpu_count()} CPUs, commit "
          f"{commit}, torch {torch_version} ({a.attn}); "
          f"OMP_WAIT_POLICY={a.wait_policy}; {a.reps} repetitions x {a.iters} iterations, "
          f"fresh processes, order alternating; load average {load0:.2f} at start, "
          f"{load1:.2f} at end, {peak:.2f} peak"
          + (f" (above {LOAD_WARN}: not final)" if peak > LOAD_WARN else ""))
    print()
    print("Wall time per iteration in ms: median (min-max of the repetition medians). CPU: the "
          "median process CPU time per iteration (all threads), which a busy machine inflates "
          "far less than the wall time; at 1 thread it is the fairer figure under load.")
    print()
    print("| case | threads | Beaver ms | PyTorch ms | PyTorch / Beaver | CPU ms Beaver / PyTorch "
          "| CPU ratio |")
    print("|---|---|---|---|---|---|---|")
    for t in threads:
        for kind, n, b in case_names(t):
            cells = []
            meds, cmeds = {}, {}
            for eng in ("beaver", "torch"):
                reps = times[n][eng]
                allt = [x for rr in reps for x in rr]
                rmeds = [statistics.median(rr) for rr in reps]
                meds[eng] = statistics.median(allt)
                cmeds[eng] = statistics.median([x for rr in cpus[n][eng] for x in rr])
                cells.append(f"{meds[eng] * 1e3:.1f} ({min(rmeds) * 1e3:.1f}-"
                             f"{max(rmeds) * 1e3:.1f})")
            label = (f"training step {TRAIN_B} x {TRAIN_S}" if kind == "train"
                     else f"generate batch {b}, {PROMPT}+{NEW} tokens")
            print(f"| {label} | {t} | {cells[0]} | {cells[1]} | "
                  f"{meds['torch'] / meds['beaver']:.2f}x | {cmeds['beaver'] * 1e3:.1f} / "
                  f"{cmeds['torch'] * 1e3:.1f} | {cmeds['torch'] / cmeds['beaver']:.2f}x |")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"started": started.isoformat(), "torch": torch_version, "attn": a.attn,
                       "wait_policy": a.wait_policy, "reps": a.reps, "iters": a.iters,
                       "load": {"start": load0, "end": load1, "samples": loads},
                       "times_s": times, "cpu_s": cpus}, fh, indent=1)


if __name__ == "__main__":
    main()
