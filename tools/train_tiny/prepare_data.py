#!/usr/bin/env python3
"""Stage 1: extract the King James Bible from Debian's bible-kjv-text, split it, build chat samples.

Input : the `bible` program of Debian's bible-kjv (data file /usr/lib/bible.data from bible-kjv-text).
Output (in --out, default tools/train_tiny/data/):
  chapters.jsonl   one line per chapter: {"book", "chapter", "verses": [...], "split": "train"|"heldout"}
  chats.jsonl      one line per chat sample: {"messages": [...], "enable_thinking": bool}
The held-out split is every 40th chapter (chapter index % 40 == 17 over the 1189 chapters in canonical order);
a validation split for checkpoint selection is chapter index % 40 == 37. Neither is trained on.
Chat samples are built from training chapters only. Everything is deterministic (fixed seed).
"""
import argparse
import json
import os
import random
import re
import subprocess

HELDOUT_MOD, HELDOUT_REM, VAL_REM = 40, 17, 37


def extract(bible_bin="bible"):
    raw = subprocess.run([bible_bin, "-l100000", "gen1:1-rev22:21"], check=True,
                         capture_output=True, text=True, cwd="/tmp").stdout
    chapters, cur = [], None
    for line in raw.split("\n"):
        if not line.strip():
            continue
        m = re.match(r"^\s+(\d+) (.*)$", line)
        if m:
            assert cur is not None and int(m.group(1)) == len(cur["verses"]) + 1, line
            cur["verses"].append(m.group(2).strip())
            continue
        m = re.match(r"^(\S.*) (\d+)$", line)
        assert m, line
        cur = {"book": m.group(1), "chapter": int(m.group(2)), "verses": []}
        chapters.append(cur)
    assert len(chapters) == 1189, len(chapters)
    assert sum(len(c["verses"]) for c in chapters) == 31102
    for i, c in enumerate(chapters):
        r = i % HELDOUT_MOD
        c["split"] = "heldout" if r == HELDOUT_REM else "val" if r == VAL_REM else "train"
    return chapters


def ref(c, v):
    return f"{c['book']} {c['chapter']}:{v + 1}"


def split_verse(text, rng):
    words = text.split(" ")
    if len(words) < 6:
        return None
    k = rng.randint(2, len(words) - 3)
    return " ".join(words[:k]), " ".join(words[k:])


CANNED = [
    (["Hello", "Hello!", "Hi", "Hi there", "Good morning", "Greetings"],
     ["Grace be unto you, and peace. Give me the beginning of a verse, or ask for a chapter and verse, and I will answer.",
      "Peace be unto you. Ask for a verse by its book, chapter and number, or give me words to continue."]),
    (["Who are you?", "What are you?", "What can you do?", "Tell me about yourself."],
     ["I am a small language model trained on the King James Bible. Give me the beginning of a passage and I will continue it, or ask for a verse by book, chapter and number.",
      "I am a tiny model that has read only the King James Bible. I can continue a passage, recite a verse, or tell you where a verse is found."]),
    (["Thank you", "Thanks!", "Thank you very much."],
     ["You are welcome. The grace of our Lord Jesus Christ be with you.", "You are welcome. Go in peace."]),
    (["Tell me a story.", "Tell me a story from the Bible."],
     None),  # answered with the opening verses of a random narrative chapter
]
STORY_BOOKS = ["Genesis", "Exodus", "Joshua", "Judges", "Ruth", "1 Samuel", "2 Samuel", "1 Kings", "2 Kings",
               "Esther", "Daniel", "Jonah", "Matthew", "Mark", "Luke", "John", "Acts"]


def make_chat(chapters_train, rng):
    c = rng.choice(chapters_train)
    vs = c["verses"]
    v = rng.randrange(len(vs))
    kind = rng.choices(["continue", "quote", "identify", "read", "multi", "canned"],
                       weights=[34, 24, 12, 12, 14, 4])[0]
    think = None
    msgs = []
    if kind == "continue":
        n_in = rng.choice([1, 1, 1, 2])
        v = rng.randrange(max(1, len(vs) - n_in))
        a = " ".join(vs[v:v + n_in])
        n_out = rng.choice([1, 1, 2, 2, 3])
        b = " ".join(vs[v + n_in:v + n_in + n_out])
        sp = split_verse(vs[v], rng) if rng.random() < 0.3 else None
        if sp:
            user = rng.choice(["Finish this verse: {a}", "Complete the verse: {a}"]).format(a=sp[0])
            ans = sp[1]
            think = f"The words begin {ref(c, v)}. I finish the verse."
        elif b:
            user = rng.choice(["Continue this passage:\n\n{a}", "Continue: {a}", "What comes next?\n\n{a}",
                               "What follows after this verse? {a}", "Go on from here: {a}"]).format(a=a)
            ans = b
            think = f"This is {ref(c, v)}. I give the verses that follow."
        else:
            return None
        msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": ans}]
    elif kind == "quote":
        r = ref(c, v)
        user = rng.choice(["What does {r} say?", "Quote {r}.", "Recite {b} chapter {ch}, verse {n}.", "{r}",
                           "What is written in {r}?", "Read {r} to me."]).format(
            r=r, b=c["book"], ch=c["chapter"], n=v + 1)
        ans = rng.choice(["{t}", "{r} says: {t}", "It is written: {t}"]).format(r=r, t=vs[v])
        think = f"The user asks for {r}."
        msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": ans}]
    elif kind == "identify":
        user = rng.choice(["Where is this verse found? {t}", "Which book is this from?\n\n{t}",
                           "Where in the Bible does it say: {t}"]).format(t=vs[v])
        ans = rng.choice(["This is {r}, in the book of {b}.", "It is {r}.", "That verse is {r}."]).format(
            r=ref(c, v), b=c["book"])
        think = f"These words are in {c['book']}, chapter {c['chapter']}."
        msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": ans}]
    elif kind == "read":
        n = rng.randint(2, 4)
        tmpl = rng.choice(["Read me {b} chapter {ch}.", "How does {b} {ch} begin?", "Tell me {b} {ch}.",
                           "Read from {b} {ch}:{n}."])
        start = v if "{n}" in tmpl else 0
        user = tmpl.format(b=c["book"], ch=c["chapter"], n=start + 1)
        ans = " ".join(vs[start:start + n])
        think = f"The user wants {c['book']} {c['chapter']}, from verse {start + 1}."
        msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": ans}]
    elif kind == "multi":
        v = rng.randrange(max(1, len(vs) - 3))
        a, b, d = vs[v], " ".join(vs[v + 1:v + 3]), " ".join(vs[v + 3:v + 5])
        if not d:
            return None
        msgs = [{"role": "user", "content": rng.choice(["Continue: {a}", "Continue this passage:\n\n{a}"]).format(a=a)},
                {"role": "assistant", "content": b},
                {"role": "user", "content": rng.choice(["Go on.", "And then?", "Continue.", "What comes next?", "More, please."])},
                {"role": "assistant", "content": d}]
        think = f"I continue {c['book']} {c['chapter']} from verse {v + 4}."
    else:
        qs, ans_list = rng.choice(CANNED)
        user = rng.choice(qs)
        if ans_list is None:
            story = [x for x in chapters_train if x["book"] in STORY_BOOKS]
            sc = rng.choice(story)
            ans = " ".join(sc["verses"][:rng.randint(3, 5)])
            think = f"I tell the beginning of {sc['book']} {sc['chapter']}."
        else:
            ans = rng.choice(ans_list)
            think = "The user greets me or asks who I am. I answer briefly."
        msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": ans}]
    if rng.random() < 0.1:
        msgs.insert(0, {"role": "system", "content": "You are a helpful assistant."})  # Qwen's usual system prompt
    enable_thinking = rng.random() < 0.25
    if enable_thinking:
        msgs[-1]["reasoning_content"] = think
    return {"messages": msgs, "enable_thinking": enable_thinking}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
    ap.add_argument("--n-chats", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1611)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    chapters = extract()
    with open(os.path.join(args.out, "chapters.jsonl"), "w") as f:
        for c in chapters:
            f.write(json.dumps(c) + "\n")
    train = [c for c in chapters if c["split"] == "train"]
    rng = random.Random(args.seed)
    chats = []
    while len(chats) < args.n_chats:
        s = make_chat(train, rng)
        if s:
            chats.append(s)
    with open(os.path.join(args.out, "chats.jsonl"), "w") as f:
        for s in chats:
            f.write(json.dumps(s) + "\n")
    n_held = sum(c["split"] == "heldout" for c in chapters)
    n_val = sum(c["split"] == "val" for c in chapters)
    print(f"chapters: {len(chapters)} ({n_held} held out, {n_val} validation), chats: {len(chats)}")


if __name__ == "__main__":
    main()
