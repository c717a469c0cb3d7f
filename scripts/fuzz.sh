#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for SECONDS (default 60).
# New interesting inputs go to a scratch corpus; crashes are written to fuzz/regressions/<target>/,
# where tests/fuzz/test_corpora.cpp replays them in every test run.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# FLASHMOE_FUZZ_SEED fixes libFuzzer's seed (CI uses one, so its smoke run is repeatable).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=(safetensors config tokenizer_encode tokenizer_decode jinja http); fi

if ! command -v clang++ >/dev/null; then
  echo "fuzz: clang++ is not installed (scripts/setup.sh installs it)" >&2
  exit 1
fi
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DFLASHMOE_FUZZ=ON -DFLASHMOE_TESTS=OFF -DFLASHMOE_BENCH=OFF -DFLASHMOE_CUDA=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target $(printf 'fuzz_%s ' "${targets[@]}")

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t" "fuzz/regressions/$t"
  echo "fuzz: $t for ${seconds}s"
  if ! FLASHMOE_SOURCE_DIR="$PWD" build-fuzz/fuzz/fuzz_$t -max_total_time="$seconds" -rss_limit_mb=2048 -seed="${FLASHMOE_FUZZ_SEED:-0}" \
      -artifact_prefix="fuzz/regressions/$t/" "$scratch/$t" "fuzz/corpus/$t" 2> "$scratch/$t.log"; then
    echo "fuzz: $t found a failure (input saved under fuzz/regressions/$t/):" >&2
    tail -40 "$scratch/$t.log" >&2
    status=1
  else
    grep -E "^#[0-9]+.*(DONE|pulse)" "$scratch/$t.log" | tail -1 || true
  fi
done
exit $status
