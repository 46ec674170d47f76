#!/usr/bin/env python3
"""Perplexity oracle: Hugging Face transformers (in the torch venv) on a model folder.

  perplexity_oracle.py HF_DIR TEXTS.json

TEXTS.json is a list of token-id lists. Each text is run alone (no padding) with labels equal to
its ids, as transformers computes a causal LM's loss (the mean NLL of tokens 1..n-1); the
perplexity is exp(sum over texts of loss * (n - 1) / sum of (n - 1)). Prints {"perplexity": x}.
"""
import json
import math
import sys

import torch
from transformers import AutoModelForCausalLM


def main():
    model_dir, texts_path = sys.argv[1:3]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    with open(texts_path) as f:
        texts = json.load(f)
    total, predicted = 0.0, 0
    with torch.no_grad():
        for ids in texts:
            if len(ids) < 2:
                continue
            x = torch.tensor([ids], dtype=torch.long)
            loss = model(x, labels=x).loss.item()
            total += loss * (len(ids) - 1)
            predicted += len(ids) - 1
    print(json.dumps({"perplexity": math.exp(total / predicted), "tokens": predicted}))


if __name__ == "__main__":
    main()
