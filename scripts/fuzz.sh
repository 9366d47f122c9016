#!/usr/bin/env bash
# Builds the libFuzzer targets (tools/fuzz/fuzz_*.cpp) with clang++ and
# -fsanitize=fuzzer,address,undefined, outside CMake, then runs each for a bounded time on a
# copy of its committed seed corpus (tests/data/fuzz/<target>/). Crashes land in fuzz/out/.
#   scripts/fuzz.sh [SECONDS_PER_TARGET=60] [TARGET...]   (targets: safetensors pickle config
#   index data state resume metrics)
# Needs clang and libFuzzer: BEAVER_SETUP_FUZZ=1 scripts/setup.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-60}
shift || true
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(safetensors pickle config index data state resume metrics)
out=$root/fuzz/out
mkdir -p "$out"
CXX=${CXX_FUZZ:-clang++}
command -v "$CXX" >/dev/null || { echo "fuzz: $CXX not found (BEAVER_SETUP_FUZZ=1 scripts/setup.sh)" >&2; exit 1; }
json_inc=$(dirname "$(dirname "$(find /usr/include /usr/local/include -name json.hpp -path '*nlohmann*' 2>/dev/null | head -1)")")
# The parsers and the little of the runtime they use; no OpenMP/BLAS needed.
common=(csrc/error.cpp csrc/dtype.cpp csrc/tensor.cpp csrc/device.cpp csrc/atomic_file.cpp
        csrc/safetensors.cpp)
pickle="csrc/zip.cpp csrc/torch_pickle.cpp"
declare -A extra=([safetensors]="" [pickle]="$pickle"
                  [config]="$pickle model/config.cpp model/checkpoint.cpp"
                  [index]="$pickle model/config.cpp model/checkpoint.cpp"
                  [data]="csrc/log.cpp csrc/philox.cpp train/data.cpp train/template.cpp"
                  [state]="train/state_json.cpp train/trainer_state_json.cpp train/checkpoint_dir.cpp"
                  [resume]="train/state_json.cpp train/optimizer_json.cpp train/rlhf_state_json.cpp train/ppo.cpp"
                  [metrics]="csrc/image.cpp train/plot.cpp -lz")  # PNGs are deflated with zlib
flags=(-std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -I"$root" -I"$json_inc" -DBEAVER_FUZZ_ROOT="\"$root\"")
for t in "${targets[@]}"; do
  bin=$out/fuzz_$t
  echo "fuzz: building $bin" >&2
  # shellcheck disable=SC2086
  (cd "$root" && "$CXX" "${flags[@]}" tools/fuzz/fuzz_$t.cpp "${common[@]}" ${extra[$t]} -o "$bin")
  corpus=$out/corpus_$t
  mkdir -p "$corpus" "$out/crashes_$t"
  cp -n "$root"/tests/data/fuzz/$t/* "$corpus"/ 2>/dev/null || true
  echo "fuzz: running $t for ${seconds}s" >&2
  (cd "$out/crashes_$t" && "$bin" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 \
     -print_final_stats=1 "$corpus")
done
