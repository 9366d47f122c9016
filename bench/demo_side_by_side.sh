#!/usr/bin/env bash
# The main job's two orchestrations back to back on this machine: scripts/demo.sh --sequential
# (every stage after the other, each with --threads as given; by default every core) and the
# default (independent stages side by side, one thread each unless --threads says otherwise).
# Prints both wall times, the load average around each run and whether the two results tables
# are byte-identical (they are when every stage ran with the same thread count: pass
# --threads N to give both runs the same one). Each run's stage times: DIR/{sequential,
# side-by-side}/logs/timing.md.
#   bench/demo_side_by_side.sh [--quick | --ci] [--seed N] [--threads N] [--out DIR]
# Uses the binary in $BEAVER_BUILD_DIR (default build/) as it is; DIR defaults to a fresh
# folder under /tmp, removed at the end unless --out is given.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
size=()
demo_args=()
out=
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick | --ci) size=("$1") ;;
    --seed | --threads) demo_args+=("$1" "$2"); shift ;;
    --out) out=$2; shift ;;
    *) echo "demo_side_by_side: unknown argument $1 (use --quick, --ci, --seed N, --threads N, --out DIR)" >&2; exit 2 ;;
  esac
  shift
done
keep=1
if [[ -z $out ]]; then
  out=$(mktemp -d /tmp/beaver-demo-bench.XXXXXX)
  keep=0
fi
mkdir -p "$out"
[[ $keep == 1 ]] || trap 'rm -rf "$out"' EXIT
load() { cut -d' ' -f1-3 /proc/loadavg; }
declare -A wall before after
for mode in sequential side-by-side; do
  flags=(--no-build --out "$out/$mode" ${size[@]+"${size[@]}"} ${demo_args[@]+"${demo_args[@]}"})
  [[ $mode == sequential ]] && flags+=(--sequential)
  before[$mode]=$(load)
  t0=$EPOCHREALTIME
  if ! "$root/scripts/demo.sh" "${flags[@]}" > "$out/$mode.log" 2>&1; then
    tail -30 "$out/$mode.log" >&2
    echo "demo_side_by_side: the $mode demo failed; its output: $out/$mode.log" >&2
    keep=1
    trap - EXIT
    exit 1
  fi
  wall[$mode]=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
  after[$mode]=$(load)
done
echo "demo ${size[*]:-(full size)} ${demo_args[*]:-} on $(nproc) cores, commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u '+%Y-%m-%d %H:%M UTC')"
for mode in sequential side-by-side; do
  printf '  %-13s %5d s  (%d min %02d s; load average %s before, %s after)\n' "$mode" \
    "${wall[$mode]}" $(( wall[$mode] / 60 )) $(( wall[$mode] % 60 )) "${before[$mode]}" "${after[$mode]}"
done
awk -v a="${wall[sequential]}" -v b="${wall[side-by-side]}" \
  'BEGIN { if (b > 0) printf "  side by side / sequential: %.2f of the wall time\n", b / a }'
if cmp -s "$out/sequential/results.md" "$out/side-by-side/results.md"; then
  echo "  results.md: byte-identical"
else
  echo "  results.md: DIFFERENT (diff below)"
  diff "$out/sequential/results.md" "$out/side-by-side/results.md" || true
fi
[[ $keep == 1 ]] && echo "  runs kept under $out"
exit 0
