#!/usr/bin/env bash
# One command for the device machine: unpack the carried Debian packages (scripts/gpu-carry.sh
# fetched them into .device-carry/ here), configure and build the GPU tests and benches for
# sm_90 only, run `ctest -L gpu`, run every bench_* binary's GPU cases (median of repetitions),
# run the PyTorch baselines, and print a compact table last. Full logs and JSON go to
# ./gpu-check-out; when $OUT is set (the device tool), they are packed into $OUT/gpu-check.tar.gz
# and the table is copied to $OUT/table.txt (the tool returns at most 8 files).
# Meant to finish in well under 8 minutes.
#
# Environment: BEAVER_DEPS_DIR (default /tmp/deps) where the packages are unpacked;
# BEAVER_GPU_BUILD (default build-gpu) the build folder; BEAVER_BENCH_REPS (default 5);
# BEAVER_SKIP_BUILD=1 reuses an existing build; BEAVER_CONFIGURE_ONLY=1 stops after cmake (to
# check the dependency wiring on a machine without a GPU).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$root/gpu-check-out
build=${BEAVER_GPU_BUILD:-$root/build-gpu}
deps=${BEAVER_DEPS_DIR:-/tmp/deps}
reps=${BEAVER_BENCH_REPS:-5}
mkdir -p "$out"
t0=$(date +%s)
stamp() { echo "gpu-check: [$(( $(date +%s) - t0 )) s] $*"; }
status=0

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true; } \
  | tee "$out/device.txt"
git -C "$root" rev-parse HEAD 2>/dev/null | tee "$out/commit.txt"

# ---- 1. dependencies from the carried .deb files -------------------------------------------
cmake_args=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DBEAVER_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90)
if compgen -G "$root/.device-carry/*.deb" >/dev/null; then
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

# ---- 2. configure and build the GPU tests and benches ---------------------------------------
if [[ "${BEAVER_SKIP_BUILD:-0}" != 1 ]]; then
  if ! cmake -S "$root" -B "$build" "${cmake_args[@]}" >"$out/configure.log" 2>&1; then
    tail -40 "$out/configure.log"
    stamp "configure FAILED (log: $out/configure.log)"
    exit 1
  fi
  stamp "configured $build"
  if [[ "${BEAVER_CONFIGURE_ONLY:-0}" == 1 ]]; then exit 0; fi
  mapfile -t targets < <(ninja -C "$build" -t targets all 2>/dev/null |
                         grep -oE '^(gpu_test_[A-Za-z0-9_]+|bench_[A-Za-z0-9_]+):' | tr -d ':' |
                         sort -u)
  # Keep going past a target that fails (e.g. a family whose CUDA backend is not merged yet):
  # the others still get tested and timed, and the failure is reported.
  if ! cmake --build "$build" -j "$(nproc)" --target "${targets[@]}" -- -k 0 \
       >"$out/build.log" 2>&1; then
    status=1
    grep -E "^FAILED|error:" "$out/build.log" | head -40
    stamp "build FAILED for some targets (log: $out/build.log); continuing with the rest"
  else
    stamp "built ${#targets[@]} targets"
  fi
fi

# ---- 3. GPU tests ----------------------------------------------------------------------------
if ctest --test-dir "$build" -L gpu --output-on-failure -j 4 --timeout 300 \
     --output-junit "$out/ctest-gpu.xml" >"$out/ctest-gpu.log" 2>&1; then
  stamp "gpu tests passed: $(grep -E 'tests passed' "$out/ctest-gpu.log")"
else
  status=1
  grep -E "Failed|\*\*\*|tests passed" "$out/ctest-gpu.log" | head -40
  stamp "gpu tests FAILED (log: $out/ctest-gpu.log)"
fi

# ---- 4. benches (GPU cases only: names start with gpu_) -----------------------------------
for bin in "$build"/bench_*; do
  [[ -x "$bin" ]] || continue
  name=$(basename "$bin")
  # bench_model's cases are whole generate runs (hundreds of decode steps, a 7B model built
  # per case): one repetition each keeps gpu-check within its time budget.
  r=$reps agg=true
  [[ "$name" == bench_model ]] && r=1 agg=false
  if ! "$bin" --benchmark_filter='^gpu_' --benchmark_repetitions="$r" \
       --benchmark_report_aggregates_only="$agg" --benchmark_min_time=0.05 \
       --benchmark_out="$out/$name.json" --benchmark_out_format=json \
       >"$out/$name.txt" 2>&1; then
    status=1
    stamp "$name FAILED (log: $out/$name.txt)"
  fi
done
stamp "benches done"

# ---- 5. PyTorch baselines ------------------------------------------------------------------
if ! python3 "$root/bench/torch_baselines.py" --json "$out/torch.json" >"$out/torch.txt" 2>&1; then
  tail -20 "$out/torch.txt"
  stamp "torch baselines FAILED (log: $out/torch.txt)"
fi
stamp "baselines done"

# HF transformers generate on the LLaMA-7B shapes of bench_model (random bf16 weights), printed
# beside Beaver's rows.
if ! python3 "$root/bench/hf_generate_baseline.py" --json "$out/hf_generate.json" \
     --beaver "$out/bench_model.json" >"$out/hf_generate.txt" 2>&1; then
  tail -20 "$out/hf_generate.txt"
  stamp "HF generate baseline FAILED (log: $out/hf_generate.txt)"
fi
stamp "HF generate baseline done"

if ! python3 "$root/bench/torch_attention_baseline.py" >"$out/torch_attention.txt" 2>&1; then
  tail -20 "$out/torch_attention.txt"
  stamp "attention baselines FAILED (log: $out/torch_attention.txt)"
fi
stamp "attention baselines done"

# ---- 6. the compact table (last) -------------------------------------------------------------
cat "$out/torch_attention.txt"
python3 "$root/bench/summarize.py" "$out" | tee "$out/table.txt"
cat "$out/hf_generate.txt" 2>/dev/null | tee -a "$out/table.txt"
if [[ -n "${OUT:-}" ]]; then
  tar -czf "$OUT/gpu-check.tar.gz" -C "$out" .
  cp "$out/table.txt" "$OUT/table.txt"
fi
stamp "total"
exit $status
