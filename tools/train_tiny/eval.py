#!/usr/bin/env python3
"""Held-out perplexity of the shipped snapshot with transformers (the reference numbers in RESULTS.md).

Metric: ids = heldout_ids.json (the tokenisation of heldout.txt). Cut into non-overlapping 256-token windows
ids[256*w : 256*(w+1)], w = 0 .. floor(len/256)-1 (the tail is dropped). Each window is run on its own from an
empty state (no BOS, no cache); targets are window positions 1..255 predicted from the prefix before them, so
255 predictions per window. NLL = mean over all predictions of -log softmax(logits)[target] (natural log);
perplexity = exp(NLL). Reference: bf16 weights from model.safetensors upcast to fp32, fp32 compute, eager
attention, eager experts (transformers' own loop), chunked DeltaNet (torch fallback), on CPU.
Half K: the router keeps the top num_experts_per_tok/2 of the softmax and renormalises over those.

python3 tools/train_tiny/eval.py [--samples]
"""
import argparse
import json
import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from train import samples, window_nll  # noqa: E402


def set_k(model, k):
    for mod in model.modules():
        if mod.__class__.__name__.endswith("TopKRouter"):
            mod.top_k = k


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(REPO, "models", "tiny-qwen35moe"))
    ap.add_argument("--samples", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "results.json"))
    args = ap.parse_args()
    import transformers
    from transformers import AutoTokenizer, Qwen3_5MoeForCausalLM
    torch.set_num_threads(os.cpu_count())
    ids = json.load(open(os.path.join(HERE, "heldout_ids.json")))
    tok = AutoTokenizer.from_pretrained(args.model)
    assert tok(open(os.path.join(HERE, "heldout.txt")).read(), add_special_tokens=False)["input_ids"] == ids
    res = {"transformers": transformers.__version__, "torch": torch.__version__, "heldout_tokens": len(ids),
           "windows": len(ids) // 256, "window": 256, "predictions": (len(ids) // 256) * 255}
    for dtype in (torch.float32, torch.bfloat16):
        model = Qwen3_5MoeForCausalLM.from_pretrained(args.model, dtype=dtype, attn_implementation="eager",
                                                      experts_implementation="eager").eval()
        k0 = model.config.num_experts_per_tok
        for k in (k0, k0 // 2):
            set_k(model, k)
            nll = window_nll(model, ids, win=256, bs=16)
            name = f"{'fp32' if dtype == torch.float32 else 'bf16'}_compute_K{k}"
            res[name] = {"nll": round(nll, 5), "ppl": round(math.exp(nll), 4)}
            print(name, res[name], flush=True)
        set_k(model, k0)
        if dtype == torch.float32 and args.samples:
            samples(model, tok, "cpu")
    json.dump(res, open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
