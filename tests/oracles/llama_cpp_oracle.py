#!/usr/bin/env python3
"""Forward-pass oracle: llama.cpp (PyPI `llama-cpp-python`) on the same weights.

  llama_cpp_oracle.py MODEL.gguf PROMPTS.json OUT_DIR [N_GREEDY]

The model is first rewritten with every tensor dequantized to F32 (by the `gguf` package), so
llama.cpp multiplies full-precision weights with full-precision activations, as schism does;
otherwise llama.cpp would quantize activations to 8 bits inside its Q4 kernels. The KV cache is
F32 too. PROMPTS.json is a list of token-id lists or texts; llama.cpp tokenizes a text (BOS as
the GGUF asks, special tokens parsed) and OUT_DIR/tokens.json lists every prompt's ids. Writes
OUT_DIR/logits.f32 (n_prompts x vocab next-token logits) and OUT_DIR/greedy.json (N_GREEDY greedy
tokens per prompt, no stopping).
"""
import json
import os
import sys

import numpy as np
import gguf
from gguf.quants import dequantize


def to_f32_gguf(src, dst):
    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(dst, arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        if name == "general.file_type":
            writer.add_uint32(name, 0)
            continue
        sub = field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), field.types[0], sub_type=sub)
    for t in reader.tensors:
        data = dequantize(t.data, t.tensor_type).astype(np.float32)
        shape = [int(d) for d in reversed(t.shape)]
        writer.add_tensor(t.name, data.reshape(shape))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main():
    model, prompts_path, out_dir = sys.argv[1:4]
    n_greedy = int(sys.argv[4]) if len(sys.argv) > 4 else 32
    import llama_cpp

    f32_path = os.path.join(out_dir, "model_f32.gguf")
    to_f32_gguf(model, f32_path)
    with open(prompts_path) as f:
        prompts = json.load(f)
    llm = llama_cpp.Llama(model_path=f32_path, n_ctx=1024, n_batch=1024, logits_all=True,
                          type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32,
                          n_threads=2, verbose=False)
    logits, greedy, tokens = [], [], []
    for ids in prompts:
        if isinstance(ids, str):
            ids = llm.tokenize(ids.encode(), add_bos=llm.metadata.get(
                "tokenizer.ggml.add_bos_token", "false") == "true", special=True)
        tokens.append(ids)
        llm.reset()
        llm.eval(ids)
        logits.append(np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32))
        out = []
        for _ in range(n_greedy):
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            out.append(tok)
            llm.eval([tok])
        greedy.append(out)
    np.stack(logits).astype(np.float32).tofile(os.path.join(out_dir, "logits.f32"))
    with open(os.path.join(out_dir, "greedy.json"), "w") as f:
        json.dump(greedy, f)
    with open(os.path.join(out_dir, "tokens.json"), "w") as f:
        json.dump(tokens, f)
    os.remove(f32_path)


if __name__ == "__main__":
    main()
