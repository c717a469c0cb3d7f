#!/usr/bin/env python3
"""Stage 2: train a byte-level BPE tokenizer in Qwen3.5's format on the training split.

Writes tokenizer.json, tokenizer_config.json and chat_template.jinja into --out (the model snapshot folder).
Layout of ids (as in Qwen3.5, scaled down):
  0 .. N_BPE-1            byte-level BPE ids (the 256 GPT-2 byte symbols first)
  N_BPE .. N_BPE+32       the 33 added tokens of Qwen3.5, in Qwen's order (<|endoftext|> first)
  .. vocab_size-1         padding ids (never produced), vocab_size = multiple of 64 (see train.py)
Normaliser NFC, Qwen3.5's split regex (Qwen3's with \\p{M} added to the letter classes), GPT-2 byte map.
"""
import argparse
import json
import os

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

QWEN35_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
                r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# (content, special) in Qwen3.5's id order (248044 ..= 248076). The first 26 are Qwen3's, as in
# ../shared/data/qwen3-tokenizer/tokenizer.json; the last 7 are the audio/TTS tokens Qwen3.5 appends.
ADDED = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True), ("<|box_end|>", True),
    ("<|quad_start|>", True), ("<|quad_end|>", True), ("<|vision_start|>", True), ("<|vision_end|>", True),
    ("<|vision_pad|>", True), ("<|image_pad|>", True), ("<|video_pad|>", True),
    ("<tool_call>", False), ("</tool_call>", False),
    ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False), ("<|fim_pad|>", False),
    ("<|repo_name|>", False), ("<|file_sep|>", False),
    ("<tool_response>", False), ("</tool_response>", False), ("<think>", False), ("</think>", False),
    ("<|audio_start|>", True), ("<|audio_end|>", True), ("<tts_pad>", True), ("<tts_text_bos>", True),
    ("<tts_text_eod>", True), ("<tts_text_bos_single>", True), ("<|audio_pad|>", True),
]


def texts(data_dir):
    with open(os.path.join(data_dir, "chapters.jsonl")) as f:
        for line in f:
            c = json.loads(line)
            if c["split"] == "train":
                yield f"{c['book']} {c['chapter']}\n\n" + "\n".join(c["verses"])
    with open(os.path.join(data_dir, "chats.jsonl")) as f:
        for line in f:
            s = json.loads(line)
            for m in s["messages"]:
                yield m["content"]
                if m.get("reasoning_content"):
                    yield m["reasoning_content"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(HERE, "data"))
    ap.add_argument("--out", default=os.path.join(REPO, "models", "tiny-qwen35moe"))
    ap.add_argument("--bpe-size", type=int, default=6000, help="number of BPE ids, bytes included")
    ap.add_argument("--chat-template", default=os.path.join(HERE, "qwen3.5-chat-template.jinja"))
    args = ap.parse_args()

    tok = Tokenizer(BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="",
                        fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN35_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = BpeTrainer(vocab_size=args.bpe_size, min_frequency=2, show_progress=False,
                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(texts(args.data), trainer=trainer)
    assert tok.get_vocab_size() == args.bpe_size, tok.get_vocab_size()
    for content, special in ADDED:  # one at a time so that ids follow Qwen's order
        tok.add_tokens([AddedToken(content, single_word=False, lstrip=False, rstrip=False,
                                   normalized=False, special=special)])
    for i, (content, _) in enumerate(ADDED):
        assert tok.token_to_id(content) == args.bpe_size + i, content

    os.makedirs(args.out, exist_ok=True)
    from transformers import PreTrainedTokenizerFast  # TokenizersBackend in transformers 5
    template = open(args.chat_template).read()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                 bos_token=None, unk_token=None, model_max_length=4096,
                                 clean_up_tokenization_spaces=False, split_special_tokens=False)
    hf.chat_template = template
    hf.save_pretrained(args.out)
    # tokenizer.json straight from the tokenizers library (what a C++ engine reads)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    with open(os.path.join(args.out, "chat_template.jinja"), "w") as f:
        f.write(template)
    cfg_path = os.path.join(args.out, "tokenizer_config.json")
    cfg = json.load(open(cfg_path))
    cfg["chat_template"] = template
    cfg["add_bos_token"] = False
    cfg["add_prefix_space"] = False
    json.dump(cfg, open(cfg_path, "w"), indent=2, ensure_ascii=False)
    print("tokenizer: %d BPE ids + %d added tokens -> %s" % (args.bpe_size, len(ADDED), args.out))


if __name__ == "__main__":
    main()
