#!/usr/bin/env python3
"""Compact table of one GPU check: Beaver's GPU bench cases (bench_*.json from Google Benchmark,
median aggregates) joined by case name with the PyTorch baselines (torch.json from
bench/torch_baselines.py). Columns: case, time (us), rate (GB/s or TFLOP/s), % of the ceiling
measured in the same run (copy or GEMM), fastest PyTorch time and which variant, and the ratio
torch time / Beaver time (> 1: Beaver is faster).

Usage: summarize.py OUT_DIR
"""
import json
import pathlib
import sys


def to_us(value, unit):
    return value * {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[unit]


def load_bench(out):
    rows, errors = {}, []
    for path in sorted(out.glob("bench_*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            errors.append(f"{path.name}: unreadable ({e})")
            continue
        for b in data.get("benchmarks", []):
            name = b.get("run_name", b["name"]).replace("/manual_time", "")
            if b.get("error_occurred"):
                errors.append(f"{name}: {b.get('error_message')}")
                continue
            if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
                continue
            rows[name] = b
    return rows, errors


def main():
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    rows, errors = load_bench(out)
    torch = {}
    tpath = out / "torch.json"
    if tpath.exists():
        torch = json.loads(tpath.read_text()).get("cases", {})
    header = f"{'case':52} {'time us':>10} {'rate':>14} {'% ceil':>7} {'torch us':>10} {'torch variant':>14} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for name in sorted(rows, key=lambda n: (not n.startswith("gpu_ceiling"), n)):
        b = rows[name]
        t = to_us(b["real_time"], b.get("time_unit", "ns"))
        if "TFLOP/s" in b:
            rate, pct = f"{b['TFLOP/s']:.1f} TFLOP/s", b.get("%gemm", 0.0)
        elif "GB/s" in b:
            rate, pct = f"{b['GB/s']:.0f} GB/s", b.get("%copy", 0.0)
        else:
            rate, pct = "-", 0.0
        base = torch.get(name, {})
        if base:
            variant, tt = min(base.items(), key=lambda kv: kv[1])
            ratio = f"{tt / t:.2f}"
            tcol = f"{tt:10.1f}"
        else:
            variant, ratio, tcol = "-", "-", f"{'-':>10}"
        print(f"{name:52} {t:10.1f} {rate:>14} {pct:7.1f} {tcol} {variant:>14} {ratio:>6}")
    # One line per distinct message (repetitions repeat errors; a missing device fails all).
    by_msg = {}
    for e in dict.fromkeys(errors):
        case_name, _, msg = e.partition(": ")
        by_msg.setdefault(msg, []).append(case_name)
    for msg, cases in by_msg.items():
        shown = cases[0] if len(cases) == 1 else f"{len(cases)} cases ({cases[0]}, ...)"
        print(f"error in {shown}: {msg}")
    if not rows and not errors:
        print("(no GPU bench results found in", out, ")")


if __name__ == "__main__":
    main()
