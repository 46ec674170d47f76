#!/usr/bin/env python3
"""Forward-pass oracle: Hugging Face transformers (PyPI, in the torch venv) on a model folder.

  transformers_oracle.py HF_DIR PROMPTS.json OUT_DIR [N_GREEDY]

Loads HF_DIR (a causal LM, or a vision-language model prompted with text only) in float32 with
the eager attention implementation and writes, like
llama_cpp_oracle.py, OUT_DIR/logits.f32 (n_prompts x vocab next-token logits, one prompt at a
time, no padding) and OUT_DIR/greedy.json (N_GREEDY greedy tokens per prompt, no stopping).
"""
import json
import os
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText


def main():
    model_dir, prompts_path, out_dir = sys.argv[1:4]
    n_greedy = int(sys.argv[4]) if len(sys.argv) > 4 else 16
    torch.manual_seed(0)
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                     attn_implementation="eager")
    except ValueError:  # a vision-language checkpoint; prompted with text only
        model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32,
                                                            attn_implementation="eager")
    model.eval()
    with open(prompts_path) as f:
        prompts = json.load(f)
    logits, greedy = [], []
    with torch.no_grad():
        for ids in prompts:
            x = torch.tensor([ids], dtype=torch.long)
            logits.append(model(x).logits[0, -1].float().numpy())
            out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n_greedy,
                                 min_new_tokens=n_greedy, do_sample=False, eos_token_id=None,
                                 pad_token_id=0)
            greedy.append([int(t) for t in out[0, len(ids):]])
    np.stack(logits).astype(np.float32).tofile(os.path.join(out_dir, "logits.f32"))
    with open(os.path.join(out_dir, "greedy.json"), "w") as f:
        json.dump(greedy, f)


if __name__ == "__main__":
    main()
