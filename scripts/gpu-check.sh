#!/usr/bin/env bash
# One command for the device machine (16 cores, at most 600 s per call): unpack the carried
# Debian packages (scripts/gpu-carry.sh fetched them into .device-carry/ here), configure and
# build only the GPU tests and benches (sm_90), then run, each stage under its own time budget:
#   configure, build          the GPU targets only (gpu_test_*, bench_*, and the beaver binary
#                             that the NCCL SFT test drives)
#   tests                     ctest -L gpu: correctness first (all but the NCCL tests)
#   nccl                      the NCCL tests (ctest -R '^Nccl': the backend alone, the
#                             communicator under mpirun on 1 rank, and on 2 ranks and SFT on
#                             2 ranks where two GPUs exist; they skip, saying why, otherwise),
#                             then bench_comm --device cuda (all-reduce and all-gather bus
#                             bandwidth; under mpirun -np <GPUs> where two or more exist)
#   sanitizer                 compute-sanitizer racecheck + synccheck over the attention and
#                             sampling tests (a short filter, repeated runs)
#   benches                   every bench_* binary's GPU cases (median of repetitions)
#   baselines                 the PyTorch / HF baselines (the long ones, last)
#   table                     the compact table
# A stage that runs past its budget is cut (SIGTERM, then SIGKILL) and reported as CUT; the
# next stage still runs. Every stage appends its line (name, status, seconds, budget) to
# gpu-check-out/stages.txt as soon as it ends, and on any exit the output folder is packed into
# $OUT/gpu-check.tar.gz (when $OUT is set), so the results of finished stages always come back.
# Exit status: 0 when every stage passed, 1 when any failed, was cut or skipped, 2 on bad usage.
#
# Environment: BEAVER_DEPS_DIR (default /tmp/deps) where the packages are unpacked;
# BEAVER_GPU_BUILD (default build-gpu) the build folder; BEAVER_GPU_CHECK_OUT (default
# ./gpu-check-out) the results; BEAVER_BENCH_REPS (default 5); BEAVER_SKIP_BUILD=1 reuses an
# existing build; BEAVER_CONFIGURE_ONLY=1 stops after cmake (to check the dependency wiring on a
# machine without a GPU). Budgets in seconds: BEAVER_BUDGET_TOTAL (default 560, the whole run;
# a stage never gets more than what is left of it), BEAVER_BUDGET_<STAGE> for CONFIGURE (40),
# BUILD (200), TESTS (80), NCCL (40), SANITIZER (50), BENCHES (70), BASELINES (50), TABLE (10):
# 540 s in all, so one 600 s device call holds the whole run with room for the tool's transfers.
# NCCL's 40 s fit one GPU (the two-rank tests skip there); with two or more GPUs the SFT test
# runs four training jobs: give BEAVER_BUDGET_NCCL=120 (and BEAVER_BUDGET_TOTAL to match).
# BEAVER_GPU_CHECK_STUB=1 replaces every device part (and the build) by a stub that sleeps
# BEAVER_STUB_SLEEP_<STAGE> seconds (default 0), writes <stage>.txt and exits with
# BEAVER_STUB_RC_<STAGE> (default 0): tests/gpu_check_stages.sh checks the stage logic so on a
# machine without a GPU.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${BEAVER_GPU_CHECK_OUT:-$root/gpu-check-out}
build=${BEAVER_GPU_BUILD:-$root/build-gpu}
deps=${BEAVER_DEPS_DIR:-/tmp/deps}
reps=${BEAVER_BENCH_REPS:-5}
stub=${BEAVER_GPU_CHECK_STUB:-0}
total=${BEAVER_BUDGET_TOTAL:-560}
mkdir -p "$out"
: >"$out/stages.txt"
t0=$(date +%s)
stamp() { echo "gpu-check: [$(( $(date +%s) - t0 )) s] $*"; }
status=0

pack() {  # on every exit: what finished is written and, under the device tool, sent back
  if [[ -n "${OUT:-}" && -d "${OUT:-}" ]]; then
    tar -czf "$OUT/gpu-check.tar.gz" -C "$out" . 2>/dev/null
    cp "$out/stages.txt" "$OUT/stages.txt" 2>/dev/null
    [[ -f "$out/table.txt" ]] && cp "$out/table.txt" "$OUT/table.txt"
  fi
}
trap pack EXIT

# run_stage NAME DEFAULT_BUDGET FUNCTION: runs FUNCTION in its own process group under the
# stage's budget (capped by what is left of the total), records the outcome.
run_stage() {
  local name=$1 def=$2 fn=$3
  local var="BEAVER_BUDGET_${name^^}"
  local budget=${!var:-$def}
  local left=$(( total - ($(date +%s) - t0) ))
  if (( left < 2 )); then
    printf '%-10s SKIPPED  0 s (budget %s s; no time left of the total %s s)\n' \
      "$name" "$budget" "$total" | tee -a "$out/stages.txt"
    status=1
    return 1
  fi
  (( budget > left )) && budget=$left
  local s0 rc secs verdict
  s0=$(date +%s)
  if [[ "$stub" == 1 ]]; then
    timeout -k 3 "$budget" bash -c "$(declare -f stub_stage); stub_stage $name" \
      >"$out/$name.log" 2>&1
  else
    timeout -k 5 "$budget" bash -c "$(declare -f "$fn"); $fn" >"$out/$name.log" 2>&1
  fi
  rc=$?
  secs=$(( $(date +%s) - s0 ))
  if (( rc == 124 || rc == 137 )); then
    verdict=CUT; status=1
  elif (( rc != 0 )); then
    verdict="FAILED(rc=$rc)"; status=1
  else
    verdict=ok
  fi
  printf '%-10s %-8s %s s (budget %s s)\n' "$name" "$verdict" "$secs" "$budget" |
    tee -a "$out/stages.txt"
  if [[ "$verdict" != ok ]]; then tail -15 "$out/$name.log" | sed "s/^/  $name: /"; fi
  [[ "$verdict" == ok ]]
}

stub_stage() {  # the device part of a stage, replaced: sleep, write a result, exit
  local n=${1^^}
  local sl="BEAVER_STUB_SLEEP_$n" rc="BEAVER_STUB_RC_$n"
  sleep "${!sl:-0}"
  echo "stub result of $1" >"$out/$1.txt"
  exit "${!rc:-0}"
}

if [[ "$stub" != 1 ]]; then
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true; } \
    | tee "$out/device.txt"
fi
git -C "$root" rev-parse HEAD 2>/dev/null | tee "$out/commit.txt"

# ---- 1. dependencies from the carried .deb files -------------------------------------------
cmake_args=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DBEAVER_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90)
if [[ "$stub" != 1 ]] && compgen -G "$root/.device-carry/*.deb" >/dev/null; then
  mkdir -p "$deps"
  for deb in "$root"/.device-carry/*.deb; do
    if command -v dpkg >/dev/null; then
      dpkg -x "$deb" "$deps"
    else  # plain ar + tar when dpkg is absent
      tmp=$(mktemp -d)
      (cd "$tmp" && ar x "$deb" && tar -xf data.tar.* -C "$deps")
      rm -rf "$tmp"
    fi
  done
  ma=$deps/usr/lib/x86_64-linux-gnu
  export LD_LIBRARY_PATH="$ma:$ma/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LIBRARY_PATH="$ma:$ma/openblas-pthread${LIBRARY_PATH:+:$LIBRARY_PATH}"
  export PKG_CONFIG_LIBDIR="$ma/pkgconfig:$deps/usr/share/pkgconfig"
  export PKG_CONFIG_SYSROOT_DIR="$deps"
  cmake_args+=(
    -DCMAKE_PREFIX_PATH="$deps/usr"
    -DPKG_CONFIG_EXECUTABLE="$deps/usr/bin/pkgconf"
    -DGTest_DIR="$ma/cmake/GTest"
    -Dbenchmark_DIR="$ma/cmake/benchmark"
    -Dnlohmann_json_DIR="$deps/usr/share/cmake/nlohmann_json"
    -DCLI11_DIR="$deps/usr/share/cmake/CLI11"
    -DBLAS_openblas_LIBRARY="$ma/openblas-pthread/libopenblas.so"
    -DCBLAS_INCLUDE_DIR="$deps/usr/include/x86_64-linux-gnu/openblas-pthread"
  )
  stamp "unpacked $(ls "$root"/.device-carry/*.deb | wc -l) packages into $deps"
else
  stamp "no .device-carry/*.deb: using the system's packages"
fi

# cuDNN SDPA oracle: the carried frontend headers, and cuDNN from PyTorch's wheel when the
# toolkit has none.
if [[ -f "$root/.device-carry/cudnn-frontend/include/cudnn_frontend.h" ]]; then
  cmake_args+=(-DBEAVER_CUDNN_FRONTEND_DIR="$root/.device-carry/cudnn-frontend")
  if ! compgen -G "/usr/local/cuda/lib*/libcudnn.so*" >/dev/null; then
    cudnn_dir=$(python3 -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__file__))' \
                2>/dev/null || true)
    if [[ -n "$cudnn_dir" ]]; then
      lib=$(ls "$cudnn_dir"/lib/libcudnn.so* 2>/dev/null | head -1)
      [[ -n "$lib" ]] && cmake_args+=(-DBEAVER_CUDNN_LIBRARY="$lib"
                                      -DBEAVER_CUDNN_INCLUDE="$cudnn_dir/include")
      export LD_LIBRARY_PATH="$cudnn_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
  fi
fi

# ---- 2. the stages ---------------------------------------------------------------------------
export root out build reps stub
export cmake_args_str="${cmake_args[*]@Q}"

stage_configure() {
  eval "args=($cmake_args_str)"
  cmake -S "$root" -B "$build" "${args[@]}"
}

stage_build() {
  # Only what the GPU checks need: the gpu_test_* and bench_* targets, and the beaver binary
  # (the NCCL SFT test runs it under mpirun).
  mapfile -t targets < <(ninja -C "$build" -t targets all 2>/dev/null |
                         grep -oE '^(gpu_test_[A-Za-z0-9_]+|bench_[A-Za-z0-9_]+|beaver):' |
                         tr -d ':' | sort -u)
  echo "building ${#targets[@]} targets: ${targets[*]}"
  # Keep going past a target that fails: the others still get tested and timed.
  cmake --build "$build" -j "$(nproc)" --target "${targets[@]}" -- -k 0
}

stage_tests() {
  set -o pipefail
  ctest --test-dir "$build" -L gpu -E '^Nccl' --output-on-failure -j 4 --timeout 120 \
    --output-junit "$out/ctest-gpu.xml" | tee "$out/tests.txt"
}

stage_nccl() {
  # One test at a time (the multi-rank ones take every GPU), then the bus bandwidth.
  set -o pipefail
  local rc=0 gpus
  ctest --test-dir "$build" -L gpu -R '^Nccl' --output-on-failure -j 1 --timeout 60 -V \
    --output-junit "$out/ctest-nccl.xml" | tee "$out/nccl.txt" || rc=1
  # Why each one skipped (no second GPU, no mpirun) stays in the log.
  grep -E 'Skipped|SKIPPED' "$out/nccl.txt" | sort -u
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
  if (( gpus >= 2 )) && command -v mpirun >/dev/null; then
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
      mpirun --oversubscribe -np "$gpus" "$build/bench_comm" --device cuda \
      >"$out/bench_comm.txt" 2>&1 || { echo "bench_comm on $gpus ranks FAILED"; rc=1; }
  else
    # One rank (busbw is 0 there by definition): the NCCL path and its per-call latency.
    "$build/bench_comm" --device cuda >"$out/bench_comm.txt" 2>&1 ||
      { echo "bench_comm FAILED"; rc=1; }
  fi
  cat "$out/bench_comm.txt"
  exit $rc
}

stage_sanitizer() {
  # Shared-memory races and illegal barriers in the attention and sampling kernels, small
  # shapes, each test run twice under each tool.
  set -o pipefail
  command -v compute-sanitizer >/dev/null || { echo "compute-sanitizer not found"; exit 1; }
  (
  rc=0
  for tool in racecheck synccheck; do
    for spec in "gpu_test_attention:AttentionCuda.Forward*:AttentionCuda.Backward*:AttentionCuda.Decode*" \
                "gpu_test_attention_stress:AttentionStress.LengthsOfNoTileMultiple" \
                "gpu_test_sampling:SamplingCuda.GreedyEqualsCpuIncludingTies:SamplingCuda.TopKTopPNeverReturnExcludedTokens"; do
      bin=${spec%%:*} filt=${spec#*:}
      [[ -x "$build/$bin" ]] || { echo "$bin: not built"; rc=1; continue; }
      echo "== $tool $bin --gtest_filter=$filt"
      compute-sanitizer --tool "$tool" --error-exitcode 3 \
        "$build/$bin" --gtest_filter="$filt" --gtest_repeat=2 --gtest_brief=1 || rc=1
    done
  done
  exit $rc
  ) 2>&1 | tee "$out/sanitizer.txt"
}

stage_benches() {
  local rc=0
  for bin in "$build"/bench_*; do
    [[ -x "$bin" ]] || continue
    local name r agg
    name=$(basename "$bin")
    # bench_model's cases are whole generate runs: one repetition each.
    r=$reps agg=true
    [[ "$name" == bench_model ]] && r=1 agg=false
    echo "== $name"
    # bench_comm is a driver, not a Google Benchmark: the nccl stage runs it.
    [[ "$name" == bench_comm ]] && continue
    "$bin" --benchmark_filter='^gpu_' --benchmark_repetitions="$r" \
      --benchmark_report_aggregates_only="$agg" --benchmark_min_time=0.05 \
      --benchmark_out="$out/$name.json" --benchmark_out_format=json \
      >"$out/$name.txt" 2>&1 || { echo "$name FAILED (log: $name.txt)"; rc=1; }
  done
  exit $rc
}

stage_baselines() {
  local rc=0
  python3 "$root/bench/torch_baselines.py" --json "$out/torch.json" >"$out/torch.txt" 2>&1 ||
    { echo "torch baselines FAILED"; tail -20 "$out/torch.txt"; rc=1; }
  python3 "$root/bench/torch_attention_baseline.py" >"$out/torch_attention.txt" 2>&1 ||
    { echo "attention baselines FAILED"; tail -20 "$out/torch_attention.txt"; rc=1; }
  python3 "$root/bench/hf_generate_baseline.py" --json "$out/hf_generate.json" \
    --beaver "$out/bench_model.json" >"$out/hf_generate.txt" 2>&1 ||
    { echo "HF generate baseline FAILED"; tail -20 "$out/hf_generate.txt"; rc=1; }
  exit $rc
}

stage_table() {
  set -o pipefail
  cat "$out/torch_attention.txt" 2>/dev/null
  python3 "$root/bench/summarize.py" "$out" | tee "$out/table.txt"
  cat "$out/hf_generate.txt" 2>/dev/null | tee -a "$out/table.txt"
}

if [[ "${BEAVER_SKIP_BUILD:-0}" != 1 ]]; then
  run_stage configure 40 stage_configure || { stamp "configure did not pass: stopping"; exit 1; }
  if [[ "${BEAVER_CONFIGURE_ONLY:-0}" == 1 ]]; then stamp "configured $build"; exit 0; fi
  run_stage build 200 stage_build || stamp "build did not pass: going on with what was built"
fi
run_stage tests 80 stage_tests
run_stage nccl 40 stage_nccl
run_stage sanitizer 50 stage_sanitizer
run_stage benches 70 stage_benches
run_stage baselines 50 stage_baselines
run_stage table 10 stage_table
[[ -f "$out/table.txt" ]] && cat "$out/table.txt"
stamp "total (status $status)"
exit $status
