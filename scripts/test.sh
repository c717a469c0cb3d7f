#!/usr/bin/env bash
# Installs dependencies, builds, and runs every test that is not labelled slow.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" -LE slow
