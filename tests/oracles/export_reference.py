#!/usr/bin/env python3
"""Independent checks of a schism export, with numpy, `safetensors` and `tokenizers` (PyPI).

  export_reference.py peft SOURCE_DIR ADAPTER_DIR MERGED_DIR
      Applies the PEFT adapter to the source weights with PEFT's documented formulas, in float64:
        LoRA: W' = W + (lora_alpha / r) * B @ A
        DoRA: W' = m / ||W + (lora_alpha / r) * B @ A||_row * (W + (lora_alpha / r) * B @ A)
      and compares with the merged export. Prints JSON: max relative error over adapted weights,
      number of adapted modules, whether every other tensor is bit-identical to the source.
  export_reference.py tokenizer TOKENIZER_JSON STRINGS_JSON OUT_JSON
      Loads tokenizer.json with Hugging Face `tokenizers` and writes the ids of each string.
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file


def load_folder(folder, base="model"):
    index = os.path.join(folder, f"{base}.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = [f"{base}.safetensors"]
    tensors = {}
    for name in files:
        tensors.update(load_file(os.path.join(folder, name)))
    return tensors


def peft(source_dir, adapter_dir, merged_dir):
    source = load_folder(source_dir)
    merged = load_folder(merged_dir)
    adapter = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        config = json.load(f)
    scaling = config["lora_alpha"] / config["r"]
    worst = 0.0
    adapted = set()
    for module in config["target_modules"]:
        key = "base_model.model." + module
        a = adapter[key + ".lora_A.weight"].astype(np.float64)
        b = adapter[key + ".lora_B.weight"].astype(np.float64)
        w = source[module + ".weight"].astype(np.float64)
        updated = w + scaling * (b @ a)
        if config["use_dora"]:
            m = adapter[key + ".lora_magnitude_vector"].astype(np.float64)
            updated = (m / np.linalg.norm(updated, axis=1))[:, None] * updated
        got = merged[module + ".weight"].astype(np.float64)
        worst = max(worst, float(np.abs(got - updated).max() / np.abs(updated).max()))
        adapted.add(module + ".weight")
    known = {k for k in adapter if any(k.startswith("base_model.model." + m + ".") for m in config["target_modules"])}
    others_equal = all(np.array_equal(source[k], merged[k]) for k in source if k not in adapted)
    print(json.dumps({"max_rel_err": worst, "modules": len(adapted), "others_equal": others_equal,
                      "stray_adapter_keys": len(adapter) - len(known),
                      "same_tensor_names": sorted(source) == sorted(merged)}))


def tokenizer(tokenizer_json, strings_json, out_json):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tokenizer_json)
    with open(strings_json, encoding="utf-8") as f:
        strings = json.load(f)
    with open(out_json, "w") as f:
        json.dump([tok.encode(s, add_special_tokens=False).ids for s in strings], f)


if __name__ == "__main__":
    if sys.argv[1] == "peft":
        peft(*sys.argv[2:5])
    elif sys.argv[1] == "tokenizer":
        tokenizer(*sys.argv[2:5])
    else:
        sys.exit(f"unknown mode {sys.argv[1]}")
