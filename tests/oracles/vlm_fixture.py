#!/usr/bin/env python3
"""Tiny random vision-language checkpoints, written by transformers (run with the torch venv).

  vlm_fixture.py KIND OUT_DIR TOKENIZER_DIR

KIND: gemma3 (Gemma3ForConditionalGeneration: a SigLIP tower, a projector and a 6-layer Gemma 3
text decoder with sliding window 8) or qwen2_5_vl (Qwen2_5_VLForConditionalGeneration, M-RoPE).
The text vocabulary is the tokenizer's (TOKENIZER_DIR's tokenizer files are copied), weights are
random at scales that give non-trivial greedy continuations, and the checkpoint keeps the layout
transformers saves it in (the decoder under a prefix, the vision tower beside it).
"""
import os
import shutil
import sys

import torch


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "layernorm" in name:
                base = 0.0 if "language_model" in name and "gemma" in type(model).__name__.lower() else 1.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.25 * torch.randn(p.shape, generator=g))


def main():
    kind, out, tokenizer_dir = sys.argv[1:4]
    with open(os.path.join(tokenizer_dir, "tokenizer.json")) as f:
        import json
        tok = json.load(f)
    vocab = len(tok["model"]["vocab"]) + len([t for t in tok["added_tokens"]
                                                 if t["content"] not in tok["model"]["vocab"]])
    text = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=6,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6)
    if kind == "gemma3":
        from transformers import Gemma3Config, Gemma3ForConditionalGeneration
        text.update(sliding_window=8, query_pre_attn_scalar=16)
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, image_size=28, patch_size=14)
        config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                              image_token_index=vocab - 1, boi_token_index=vocab - 3,
                              eoi_token_index=vocab - 2)
        model = Gemma3ForConditionalGeneration(config)
    elif kind == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
        text.update(rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3],
                                     "rope_theta": 1000000.0})
        vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2,
                      out_hidden_size=64, patch_size=14, spatial_merge_size=2,
                      temporal_patch_size=2, window_size=28, fullatt_block_indexes=[0])
        config = Qwen2_5_VLConfig(text_config=text, vision_config=vision,
                                  image_token_id=vocab - 1, video_token_id=vocab - 2,
                                  vision_start_token_id=vocab - 3, vision_end_token_id=vocab - 4)
        model = Qwen2_5_VLForConditionalGeneration(config)
    else:
        sys.exit(f"unknown kind {kind}")
    randomize(model, 5)
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(os.path.join(tokenizer_dir, name), os.path.join(out, name))


if __name__ == "__main__":
    main()
