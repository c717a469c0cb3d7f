#!/usr/bin/env python3
"""Stage 3: render and tokenise the corpus with the trained tokenizer.

Writes:
  data/train.u16          training stream (uint16 token ids, little endian): documents separated by <|endoftext|>.
                          Documents = every training chapter twice (two shuffles) + every chat sample rendered
                          with the Qwen3.5 chat template; all shuffled with a fixed seed.
  data/val_ids.json       validation chapters (checkpoint selection), same rendering as heldout
  heldout.txt             the held-out chapters as plain text, each followed by <|endoftext|> (committed)
  heldout_ids.json        token ids of heldout.txt (tokenised with special tokens recognised) (committed)
A chapter renders as "<Book> <chapter>\\n\\n" + verses joined by "\\n" (no verse numbers).
"""
import argparse
import json
import os
import random

import numpy as np
from transformers import AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def chapter_text(c):
    return f"{c['book']} {c['chapter']}\n\n" + "\n".join(c["verses"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(HERE, "data"))
    ap.add_argument("--model", default=os.path.join(REPO, "models", "tiny-qwen35moe"))
    ap.add_argument("--plain-copies", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1611)
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(args.model)
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    chapters = [json.loads(l) for l in open(os.path.join(args.data, "chapters.jsonl"))]
    chats = [json.loads(l) for l in open(os.path.join(args.data, "chats.jsonl"))]

    docs = []
    for _ in range(args.plain_copies):
        docs += [chapter_text(c) for c in chapters if c["split"] == "train"]
    n_plain = len(docs)
    for s in chats:
        docs.append(tok.apply_chat_template(s["messages"], tokenize=False,
                                            enable_thinking=s["enable_thinking"]))
    random.Random(args.seed).shuffle(docs)
    enc = tok(docs, add_special_tokens=False)["input_ids"]
    stream = []
    n_tok_plain = n_tok_chat = 0
    for d, ids in zip(docs, enc):
        stream += ids + [eot]
        if d.startswith("<|im_start|>"):
            n_tok_chat += len(ids) + 1
        else:
            n_tok_plain += len(ids) + 1
    arr = np.asarray(stream, dtype=np.uint16)
    assert arr.max() < 65535
    arr.tofile(os.path.join(args.data, "train.u16"))

    held = "".join(chapter_text(c) + "<|endoftext|>" for c in chapters if c["split"] == "heldout")
    ids = tok(held, add_special_tokens=False)["input_ids"]
    check = []
    for c in chapters:
        if c["split"] == "heldout":
            check += tok(chapter_text(c), add_special_tokens=False)["input_ids"] + [eot]
    assert ids == check
    assert tok.decode(ids) == held
    val = []
    for c in chapters:
        if c["split"] == "val":
            val += tok(chapter_text(c), add_special_tokens=False)["input_ids"] + [eot]
    with open(os.path.join(args.data, "val_ids.json"), "w") as f:
        json.dump(val, f)
    with open(os.path.join(HERE, "heldout.txt"), "w") as f:
        f.write(held)
    with open(os.path.join(HERE, "heldout_ids.json"), "w") as f:
        json.dump(ids, f)
    print(f"train stream: {len(arr)} tokens ({n_plain} plain docs: {n_tok_plain} tokens; "
          f"{len(chats)} chats: {n_tok_chat} tokens); held out: {len(ids)} tokens, {len(held)} chars")


if __name__ == "__main__":
    main()
