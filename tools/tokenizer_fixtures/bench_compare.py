#!/usr/bin/env python3
"""Single-thread encode throughput: flashmoe's tokenizer vs HF tokenizers, on the same text.

    python3 tools/tokenizer_fixtures/bench_compare.py [--mb 4] [--runs 5] [--build build]

Writes a few MB of mixed text (tools/tokenizer_fixtures/corpus.py: prose and code from local files,
real multilingual snippets, random mixes) to a temporary file, then encodes it with
  - bench_tokenizer (bench/bench_tokenizer.cpp; built here with g++ against the CMake build's
    libflashmoe_core.a when the CMake tree has no bench target), and
  - HF tokenizers in this Python, with RAYON_NUM_THREADS=1 and TOKENIZERS_PARALLELISM=false,
both as one whole document and line by line, and prints MB/s for each plus whether the ids agree.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODEL = os.path.join(ROOT, "tests", "data", "tokenizer", "qwen3")


def fnv1a(ids, h=0xCBF29CE484222325):
    for v in ids:
        for i in range(4):
            h ^= (v >> (8 * i)) & 0xFF
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench_binary(build):
    exe = os.path.join(build, "bench", "bench_tokenizer")
    if os.path.exists(exe):
        return exe
    lib = os.path.join(build, "libflashmoe_core.a")
    if not os.path.exists(lib):
        sys.exit(f"{lib} not found: build flashmoe first (cmake --build {build} --target flashmoe)")
    exe = os.path.join(build, "bench_tokenizer")
    src = os.path.join(ROOT, "bench", "bench_tokenizer.cpp")
    if not os.path.exists(exe) or os.path.getmtime(exe) < max(os.path.getmtime(src), os.path.getmtime(lib)):
        cmd = ["g++", "-std=c++20", "-O2", "-I", os.path.join(ROOT, "src"), src, lib, "-lfmt", "-lpcre2-8",
               "-lpthread", "-o", exe]
        print("building:", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True)
    return exe


def split_lines(text):
    """Lines ending at '\\n' (kept), as bench_tokenizer --lines cuts them (not str.splitlines, which
    also cuts at \\r, \\x85, U+2028 and others)."""
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def bench_hf(text, lines, runs):
    tok = Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
    pieces = [text] if not lines else split_lines(text)
    times = []
    for _ in range(runs):
        h, count = 0xCBF29CE484222325, 0
        start = time.perf_counter()
        encs = [tok.encode(p, add_special_tokens=False) for p in pieces]
        times.append(time.perf_counter() - start)
        for e in encs:
            count += len(e.ids)
            h = fnv1a(e.ids, h)
    mb = len(text.encode("utf-8")) / 1e6
    first = times[0]
    times.sort()
    return {"impl": "hf-tokenizers", "mode": "lines" if lines else "document", "tokens": count,
            "ids_fnv1a": f"{h:016x}", "first_mb_s": mb / first, "best_mb_s": mb / times[0],
            "median_mb_s": mb / times[len(times) // 2]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=4)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    args = ap.parse_args()
    text = corpus.bench_text(int(args.mb * (1 << 20)))
    exe = bench_binary(args.build)
    import tokenizers
    print(f"machine: {cpu_name()}, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}; "
          f"date: {time.strftime('%Y-%m-%d')}; HF tokenizers {tokenizers.__version__}")
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False) as f:
        f.write(text)
        path = f.name
    try:
        size = os.path.getsize(path)
        print(f"text: {size / 1e6:.2f} MB, {len(split_lines(text))} lines")
        for lines in (False, True):
            cmd = [exe, MODEL, path, "--runs", str(args.runs)] + (["--lines"] if lines else [])
            ours = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            hf = bench_hf(text, lines, args.runs)
            same = ours["ids_fnv1a"] == hf["ids_fnv1a"] and ours["tokens"] == hf["tokens"]
            mode = ours["mode"]
            for r in (ours, hf):
                print(f"  {mode:8s} {r['impl']:14s} first {r['first_mb_s']:7.2f} MB/s  best {r['best_mb_s']:7.2f} MB/s"
                      f"  median {r['median_mb_s']:7.2f} MB/s  ({r['tokens']} tokens)")
            print(f"  {mode:8s} ids identical: {same}; speed-up (median) {ours['median_mb_s'] / hf['median_mb_s']:.2f}x")
    finally:
        os.unlink(path)


if __name__ == "__main__":
    main()
