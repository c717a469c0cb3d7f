#!/usr/bin/env python3
"""Join the sharded bf16 snapshot that train.py writes (shards <= 15 MB so they can come back from the GPU
machine) into one model.safetensors, and copy config.json / generation_config.json into the model folder.

python3 tools/train_tiny/merge.py SNAPDIR models/tiny-qwen35moe
"""
import json
import os
import shutil
import sys

from safetensors import safe_open
from safetensors.torch import save_file


def main(src, dst):
    idx = json.load(open(os.path.join(src, "model.safetensors.index.json")))
    tensors = {}
    for shard in sorted(set(idx["weight_map"].values())):
        with safe_open(os.path.join(src, shard), "pt") as f:
            for k in f.keys():
                tensors[k] = f.get_tensor(k)
    assert set(tensors) == set(idx["weight_map"])
    os.makedirs(dst, exist_ok=True)
    save_file({k: tensors[k].contiguous() for k in sorted(tensors)}, os.path.join(dst, "model.safetensors"),
              metadata={"format": "pt"})
    for name in ("config.json", "generation_config.json"):
        shutil.copy(os.path.join(src, name), os.path.join(dst, name))
    n = sum(t.numel() for t in tensors.values())
    print(f"{len(tensors)} tensors, {n:,} parameters, dtypes {sorted({str(t.dtype) for t in tensors.values()})}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
