#!/usr/bin/env python3
"""Tokenizer oracle: Hugging Face `tokenizers` (PyPI) built from the model's GGUF vocabulary.

  tokenizer_oracle.py MODEL.gguf DATA_DIR OUT_DIR
  tokenizer_oracle.py --sentencepiece DATA_DIR OUT_DIR
      A SentencePiece-style BPE (Llama 2 layout: "▁" normalizer, byte fallback) trained by
      `tokenizers` on the prompt sets, then the same three files.

Writes OUT_DIR/tokenizer.json (the HF tokenizer: BPE + Digits + ByteLevel, special tokens from
the GGUF token types), OUT_DIR/strings.json (test strings: every prompt of the four datasets plus
generated unicode, emoji, digit, whitespace and code strings, and chat-formatted text) and
OUT_DIR/ids.json (the ids `tokenizers` gives for each string).
"""
import json
import random
import sys

import gguf
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers


def field_strings(reader, key):
    f = reader.fields[key]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def build(model_path):
    reader = gguf.GGUFReader(model_path)
    tokens = field_strings(reader, "tokenizer.ggml.tokens")
    merges = field_strings(reader, "tokenizer.ggml.merges")
    types_field = reader.fields["tokenizer.ggml.token_type"]
    types = [int(types_field.parts[i][0]) for i in types_field.data]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges]))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    specials = [AddedToken(tokens[i], special=True, normalized=False)
                for i, t in enumerate(types) if t in (3, 4)]
    tok.add_special_tokens(specials)
    return tok


def test_strings(data_dir):
    strings = []
    for name in ("harmful_train", "harmful_test", "harmless_train", "harmless_test"):
        with open(f"{data_dir}/{name}.txt", encoding="utf-8") as f:
            strings += [line.rstrip("\n") for line in f]
    rng = random.Random(7)
    pieces = ["hello", "Hello", " world", "  ", "\t", "\n", "\n\n", "   \n ", "123", "4567890",
              "3.14159", "1,000,000", "naïve", "café", "Straße", "日本語", "中文字符", "한국어",
              "Привет", "مرحبا", "😀", "👍🏽", "🇺🇸", "👨‍👩‍👧", "e\u0301", "def f(x):\n    return x**2",
              "if (a && b) { c(); }", "<div class=\"x\">", "x = [1, 2, 3]", "it's", "we'll",
              "I'M", "don't", "'s", "!!!", "...", "—", "“quoted”", "‘single’", "a\u00a0b",
              "\u200b", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "user", "assistant",
              "  leading", "trailing  ", "MiXeD CaSe", "$%^&*", "@user #tag", "http://x.org/a?b=c"]
    while len(strings) < 2600:
        n = rng.randint(1, 8)
        strings.append("".join(rng.choice(pieces) for _ in range(n)))
    strings.append("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                   "<|im_start|>user\nWrite a poem.<|im_end|>\n<|im_start|>assistant\n")
    strings.append("")
    return strings


def build_sentencepiece(data_dir):
    from tokenizers import normalizers, trainers
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    specials = ["<unk>", "<s>", "</s>"]
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=specials + byte_tokens, limit_alphabet=120)
    lines = []
    for name in ("harmful_train", "harmless_train"):
        with open(f"{data_dir}/{name}.txt", encoding="utf-8") as f:
            lines += [line.rstrip("\n") for line in f]
    tok.train_from_iterator(lines, trainer)
    # Byte tokens are ordinary vocabulary entries in Llama 2, not added tokens.
    return tok


def main():
    if sys.argv[1] == "--sentencepiece":
        data_dir, out_dir = sys.argv[2:4]
        tok = build_sentencepiece(data_dir)
    else:
        model_path, data_dir, out_dir = sys.argv[1:4]
        tok = build(model_path)
    tok.save(f"{out_dir}/tokenizer.json")
    strings = test_strings(data_dir)
    ids = [tok.encode(s, add_special_tokens=False).ids for s in strings]
    with open(f"{out_dir}/strings.json", "w", encoding="utf-8") as f:
        json.dump(strings, f, ensure_ascii=False)
    with open(f"{out_dir}/ids.json", "w") as f:
        json.dump(ids, f)


if __name__ == "__main__":
    main()
