#!/usr/bin/env bash
# Builds flashmoe for sm_90 only (quick) into build-cuda/ and runs every CUDA test (label cuda: the
# per-kernel tests, the golden fixtures on CUDA, the tier-identity test) plus the CPU golden
# fixtures, on a machine with an NVIDIA GPU. Extra arguments go to cmake's configure step
# (e.g. -DCMAKE_CUDA_ARCHITECTURES=80 for an A100). Exit status: non-zero if any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASHMOE_CUDA=ON -DFLASHMOE_BENCH=OFF \
    -DCMAKE_CUDA_ARCHITECTURES="${FLASHMOE_CUDA_ARCHS:-90}" "$@" >/dev/null
cmake --build build-cuda -j"$(nproc)" --target test_cuda test_golden flashmoe
ctest --test-dir build-cuda --output-on-failure -L 'cuda|golden' -j4
