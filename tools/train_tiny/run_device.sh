#!/usr/bin/env bash
# Run on the GPU machine from the repo root (the device command in README.md). Trains two regularisation
# settings one after the other, keeps the snapshot with the lower validation NLL in $OUT/snap.
set -euo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
OUT=${OUT:-/tmp/tiny_out}
T=tools/train_tiny/train.py
nvidia-smi --query-gpu=name --format=csv,noheader
A=${A:-"--dropout 0.2 --max-epochs 3.5"}
B=${B:-"--dropout 0.3 --max-epochs 4.5"}
python3 $T --out /tmp/run_a $A --eval-every 25 --budget 200 2>&1 | grep -v "indices sequence"
python3 $T --out /tmp/run_b $B --eval-every 25 --budget 250 2>&1 | grep -v "indices sequence"
best=$(python3 -c "
import json
a = json.load(open('/tmp/run_a/train_log.json'))['best_val_nll']
b = json.load(open('/tmp/run_b/train_log.json'))['best_val_nll']
print('/tmp/run_a' if a <= b else '/tmp/run_b')")
echo "selected $best"
mkdir -p "$OUT/snap" && cp "$best"/* "$OUT/snap/"
