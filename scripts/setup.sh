#!/usr/bin/env bash
# Installs what flashmoe needs to build and test on Debian 12 (as root, or with sudo), by package name.
#   scripts/setup.sh          build dependencies and the Python test tools
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libfmt-dev nlohmann-json3-dev libcli11-dev libpcre2-dev libcpp-httplib-dev liburing-dev libedit-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-pip python3-venv tmux clang libclang-rt-14-dev
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# Python is for test tooling only: reference tokenizers, jinja2, the openai client, numpy.
PY_PACKAGES=(numpy safetensors tokenizers jinja2 openai)
if ! python3 -c "import numpy, safetensors, tokenizers, jinja2, openai" 2>/dev/null; then
  python3 -m pip install -q "${PY_PACKAGES[@]}" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "${PY_PACKAGES[@]}"
fi
