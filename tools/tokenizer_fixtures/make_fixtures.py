#!/usr/bin/env python3
"""Generates the tokenizer exactness fixtures in tests/data/tokenizer/ with HF `tokenizers`.

    python3 tools/tokenizer_fixtures/make_fixtures.py

Tokenizer variants (each a tokenizer.json that the C++ tests build the same way):
  qwen3        tests/data/tokenizer/qwen3/tokenizer.json, the real Qwen3 file
  qwen35       qwen3 + qwen35/patch.json (Qwen3.5's split regex, which adds \\p{M})
  qwen3_flags  qwen3 + qwen3_flags/patch.json (extra added tokens with lstrip/rstrip/single_word/normalized)
A patch is {"merge_patch": RFC 7396 patch, "append_added_tokens": [...]} (both optional).

Outputs (JSON lines, UTF-8):
  encode.jsonl  {"text": s, "qwen3": ids, "qwen35": ids?, "qwen3_flags": ids?, "qwen3_nospecial": ids?}
                a variant's ids are stored only where they differ from qwen3's (absent = same);
                qwen3_nospecial is HF's encode_special_tokens=True (our parse_special=false).
  decode.jsonl  {"ids": ids, "text": decode(ids), "text_skip": decode(ids, skip_special_tokens=True)}
                ids include sequences cut inside multi-byte characters (lossy U+FFFD behaviour).
  nfc.jsonl     {"in": s, "nfc": unicodedata NFC of s}
"""
import json
import os
import random
import sys
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from tokenizers import Tokenizer  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(ROOT, "tests", "data", "tokenizer")
VARIANTS = ["qwen3", "qwen35", "qwen3_flags"]


def merge_patch(target, patch):
    """RFC 7396 JSON merge patch (what nlohmann::json::merge_patch does on the C++ side)."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = merge_patch(target.get(key), value)
    return target


def variant_json(name):
    with open(os.path.join(DATA, "qwen3", "tokenizer.json"), encoding="utf-8") as f:
        base = json.load(f)
    if name == "qwen3":
        return base
    with open(os.path.join(DATA, name, "patch.json"), encoding="utf-8") as f:
        patch = json.load(f)
    base = merge_patch(base, patch.get("merge_patch", {}))
    base["added_tokens"] = base.get("added_tokens", []) + patch.get("append_added_tokens", [])
    return base


def load_variant(name):
    j = variant_json(name)
    tok = Tokenizer.from_str(json.dumps(j))
    # The C++ side takes an added token's id from the file unless its content is already in the
    # model vocabulary (then HF, and so the C++ side, use the vocabulary id); check HF agrees.
    vocab = j["model"]["vocab"]
    for t in j.get("added_tokens", []):
        assert tok.token_to_id(t["content"]) == vocab.get(t["content"], t["id"]), (name, t)
    return tok


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {path}: {len(rows)} rows, {os.path.getsize(path) / 1e6:.2f} MB", file=sys.stderr)


def encode_rows(toks, strings):
    rows = []
    for s in strings:
        base = toks["qwen3"].encode(s, add_special_tokens=True).ids
        row = {"text": s, "qwen3": base}
        for name in VARIANTS[1:]:
            ids = toks[name].encode(s, add_special_tokens=True).ids
            if ids != base:
                row[name] = ids
        toks["qwen3"].encode_special_tokens = True
        ids = toks["qwen3"].encode(s).ids
        toks["qwen3"].encode_special_tokens = False
        if ids != base:
            row["qwen3_nospecial"] = ids
        rows.append(row)
    return rows


def decode_rows(tok, strings, rng):
    rows = []
    n = tok.get_vocab_size(with_added_tokens=True)
    special = [tok.token_to_id(s) for s in corpus.SPECIALS]
    for _ in range(300):  # random ids: many are partial UTF-8 byte sequences
        ids = [rng.randrange(n) if rng.random() < 0.9 else rng.choice(special) for _ in range(rng.randint(1, 12))]
        rows.append(ids)
    for s in rng.sample(strings, 300):  # real encodings, cut anywhere (mid-character included)
        ids = tok.encode(s).ids
        if len(ids) > 2:
            a = rng.randrange(len(ids))
            ids = ids[a:a + rng.randint(1, 30)]
        rows.append(ids)
    rows.append([])
    return [{"ids": ids, "text": tok.decode(ids, skip_special_tokens=False),
             "text_skip": tok.decode(ids, skip_special_tokens=True)} for ids in rows]


def nfc_rows(rng):
    rows = []
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        ch = chr(cp)
        if unicodedata.decomposition(ch) and not unicodedata.decomposition(ch).startswith("<") or unicodedata.combining(ch):
            rows.append(ch)
            rows.append(unicodedata.normalize("NFD", ch))
    rows += ["\uac00\u11a8", "\u1100\u1161\u11a8", "\u1100\u1161", "\uac01\u11a8", "\u0b47\u0b3e", "\u0915\u093c"]
    rows += corpus.combining_strings(rng, 1500)
    return [{"in": s, "nfc": unicodedata.normalize("NFC", s)} for s in rows]


def main():
    toks = {name: load_variant(name) for name in VARIANTS}
    strings = corpus.fixture_strings()
    # Strings must be unique and valid; the C++ side reads them back through JSON.
    seen = set()
    strings = [s for s in strings if not (s in seen or seen.add(s))]
    print(f"{len(strings)} strings", file=sys.stderr)
    write_jsonl(os.path.join(DATA, "encode.jsonl"), encode_rows(toks, strings))
    rng = random.Random(99)
    write_jsonl(os.path.join(DATA, "decode.jsonl"), decode_rows(toks["qwen3"], strings, rng))
    write_jsonl(os.path.join(DATA, "nfc.jsonl"), nfc_rows(rng))


if __name__ == "__main__":
    main()
