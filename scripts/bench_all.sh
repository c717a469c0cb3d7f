#!/usr/bin/env bash
# Reproduces the tables of BENCHMARKS.md: the bundled tiny model, then the synthetic 35B-A3B
# (written on first use, 19.5 GB; removed at the end unless KEEP=1), streaming and resident.
#
#   scripts/bench_all.sh [OUT_DIR]        # default OUT_DIR: bench-results/
#
# Needs a Release build (scripts/build.sh) and ~20 GB free where SYNTH (default /tmp) points. On a
# machine shared with other work, run it as root with the whole session raised above the rest
# (`echo -15 > /proc/self/autogroup; nice -n -15 scripts/bench_all.sh`): the `tg cores busy /
# starved` column shows whether the decode got the cores.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-results}
BIN=${BIN:-build/flashmoe}
SYNTH=${SYNTH:-/tmp/flashmoe-synth35b.fmoe}
mkdir -p "$OUT"
uptime | tee "$OUT/load.txt"

# 1. The bundled tiny model: every I/O mode, a cache too small and one large enough.
"$BIN" bench models/tiny-qwen35moe -p 128 -n 128 -r 3 --k 2,4 --cache 1MiB,16MiB --io page-cache,direct \
    --cold --json "$OUT/tiny.json" --plot "$OUT/tiny.svg" | tee "$OUT/tiny.md"

# 2. The synthetic 35B-A3B (Qwen3.5 shapes, 4-bit experts).
[ -d "$SYNTH" ] || "$BIN" synth --preset qwen3.5-35b-a3b -o "$SYNTH"

# 2a. Streaming: O_DIRECT into an 8 GiB expert cache, cold page cache, K=8 and K=4.
"$BIN" bench "$SYNTH" -p 512 -n 64 -r 2 --k 8,4 --cache 8GiB --io direct --cold \
    --json "$OUT/35b-stream.json" | tee "$OUT/35b-stream.md"

# 2b. Decode against the cache size (the plot): K=8 and K=4, 2 to 16 GiB.
"$BIN" bench "$SYNTH" -p 64 -n 64 -r 2 --k 8,4 --cache 2GiB,4GiB,8GiB,16GiB --io direct --cold \
    --json "$OUT/35b-cache.json" --plot "$OUT/35b-cache.svg" | tee "$OUT/35b-cache.md"

# 2c. Resident: the expert files mapped in place with the page cache warm (no copies), and for
#     comparison buffered reads into a small own cache (every expert copied out of the page cache).
"$BIN" bench "$SYNTH" -p 512 -n 64 -r 2 --k 8 --io mmap --warm \
    --json "$OUT/35b-resident-mmap.json" | tee "$OUT/35b-resident-mmap.md"
"$BIN" bench "$SYNTH" -p 512 -n 64 -r 2 --k 8 --cache 512MiB --io page-cache --warm \
    --json "$OUT/35b-resident-pagecache.json" | tee "$OUT/35b-resident-pagecache.md"

uptime | tee -a "$OUT/load.txt"
[ "${KEEP:-0}" = 1 ] || rm -rf "$SYNTH"
