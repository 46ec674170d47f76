#!/usr/bin/env python3
"""Model fixtures for tests, written with numpy, `gguf` and `safetensors` (PyPI).

  model_fixtures.py hf-from-gguf MODEL.gguf OUT_DIR
      A Hugging Face folder holding the GGUF's weights dequantized to F32 (q/k rows restored to
      HF order), tokenizer.json, tokenizer_config.json (chat template) and generation_config.json.
  model_fixtures.py tiny VARIANT OUT_DIR SOURCE.gguf
      A tiny random model (3 layers) as both OUT_DIR/hf/ and OUT_DIR/model.gguf, with the
      tokenizer of SOURCE.gguf. VARIANT: llama3 (llama3 rope scaling, GQA), llama-tied (tied
      embeddings, MHA), mistral, qwen2 (qkv bias), qwen3 (qk-norm, head_dim != hidden/heads),
      gemma3 (6 layers: 5 sliding-window layers of window 8 and a global one, sandwich norms,
      (1 + w) norms stored as 1 + w in the GGUF as convert_hf_to_gguf.py does, GeGLU, scaled
      embeddings, linear RoPE scaling on the global layer), qwen3moe and mixtral (4 experts of
      width 48, 2 per token; Hugging Face stores one tensor per expert, the GGUF the fused 3-D
      blk.N.ffn_{gate,up,down}_exps tensors; Mixtral's GGUF is "llama" with experts), phi3 (fused
      qkv_proj and gate_up_proj, RoPE on half of each head).
  model_fixtures.py large OUT_DIR SOURCE.gguf
      A random Llama-layout Hugging Face folder of 1.35 GiB in bfloat16 (hidden 2048, 16 layers,
      GQA 16/4, MLP 5632) with a 2048-entry vocabulary, so that linear layers are 99.4% of it; the
      tokenizer files are SOURCE.gguf's (only ids below 2048 may be fed to it).
"""
import json
import os
import sys

import numpy as np
import gguf
from gguf.quants import dequantize
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(__file__))
from tokenizer_oracle import build as build_tokenizer  # noqa: E402

HF_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
LAYER_NAMES = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def permute(w, heads):
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows (HF order -> GGUF order)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w, heads):
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_name(gguf_name):
    if gguf_name in HF_NAMES:
        return HF_NAMES[gguf_name]
    _, layer, kind, suffix = gguf_name.split(".")
    return f"model.layers.{layer}.{LAYER_NAMES[kind]}.{suffix}"


def write_tokenizer_files(source_gguf, out, chat_template, bos, eos, eos_id):
    build_tokenizer(source_gguf).save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"chat_template": chat_template, "bos_token": bos, "eos_token": eos,
                   "pad_token": eos, "add_bos_token": False}, f, indent=2)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": eos_id}, f)


def hf_from_gguf(model, out):
    os.makedirs(out, exist_ok=True)
    r = gguf.GGUFReader(model)
    f = lambda k: r.fields[k].contents()
    heads, kv_heads = f("llama.attention.head_count"), f("llama.attention.head_count_kv")
    tensors = {}
    for t in r.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float32).reshape([int(d) for d in reversed(t.shape)])
        if t.name.endswith("attn_q.weight"):
            w = unpermute(w, heads)
        elif t.name.endswith("attn_k.weight"):
            w = unpermute(w, kv_heads)
        tensors[hf_name(t.name)] = np.ascontiguousarray(w)
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    hidden = f("llama.embedding_length")
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
              "intermediate_size": f("llama.feed_forward_length"),
              "num_hidden_layers": f("llama.block_count"), "num_attention_heads": heads,
              "num_key_value_heads": kv_heads, "rms_norm_eps": f("llama.attention.layer_norm_rms_epsilon"),
              "rope_theta": f("llama.rope.freq_base"), "vocab_size": f("llama.vocab_size"),
              "tie_word_embeddings": "lm_head.weight" not in tensors,
              "max_position_embeddings": f("llama.context_length")}
    with open(os.path.join(out, "config.json"), "w") as fp:
        json.dump(config, fp, indent=2)
    tokens = r.fields["tokenizer.ggml.tokens"]
    token = lambda i: bytes(tokens.parts[tokens.data[i]]).decode()
    bos_id, eos_id = f("tokenizer.ggml.bos_token_id"), f("tokenizer.ggml.eos_token_id")
    write_tokenizer_files(model, out, f("tokenizer.chat_template"), token(bos_id), token(eos_id), eos_id)


VARIANTS = {
    "llama3": dict(arch="llama", hf="LlamaForCausalLM", heads=4, kv=2, head_dim=16, tied=False,
                   bias=False, qk_norm=False, theta=500000.0,
                   rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
    "llama-tied": dict(arch="llama", hf="LlamaForCausalLM", heads=4, kv=4, head_dim=16, tied=True,
                       bias=False, qk_norm=False, theta=10000.0, rope_scaling=None),
    "mistral": dict(arch="llama", hf="MistralForCausalLM", heads=4, kv=1, head_dim=16, tied=False,
                    bias=False, qk_norm=False, theta=1000000.0, rope_scaling=None),
    "qwen2": dict(arch="qwen2", hf="Qwen2ForCausalLM", heads=4, kv=2, head_dim=16, tied=True,
                  bias=True, qk_norm=False, theta=1000000.0, rope_scaling=None),
    "qwen3": dict(arch="qwen3", hf="Qwen3ForCausalLM", heads=4, kv=2, head_dim=32, tied=False,
                  bias=False, qk_norm=True, theta=1000000.0, rope_scaling=None),
    "qwen3moe": dict(arch="qwen3moe", hf="Qwen3MoeForCausalLM", heads=4, kv=2, head_dim=16,
                     tied=False, bias=False, qk_norm=True, theta=1000000.0, rope_scaling=None,
                     moe=dict(experts=4, used=2, width=48, mixtral=False)),
    "mixtral": dict(arch="llama", hf="MixtralForCausalLM", heads=4, kv=2, head_dim=16, tied=False,
                    bias=False, qk_norm=False, theta=1000000.0, rope_scaling=None,
                    moe=dict(experts=4, used=2, width=48, mixtral=True)),
    "phi3": dict(arch="phi3", hf="Phi3ForCausalLM", heads=4, kv=2, head_dim=16, tied=False,
                 bias=False, qk_norm=False, theta=10000.0, rope_scaling=None, partial_rotary=0.5),
    "gemma3": dict(arch="gemma3", hf="Gemma3ForCausalLM", heads=4, kv=2, head_dim=16, tied=True,
                   bias=False, qk_norm=True, theta=1000000.0, rope_scaling=None, layers=6,
                   gemma=dict(window=8, local_theta=10000.0, query_pre_attn_scalar=16,
                              rope_factor=4.0)),
}

MODEL_TYPES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral",
               "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3",
               "Qwen3MoeForCausalLM": "qwen3_moe", "MixtralForCausalLM": "mixtral",
               "Gemma3ForCausalLM": "gemma3_text", "Phi3ForCausalLM": "phi3"}

# Phi-3's fused projections, GGUF -> HF (its ffn_up holds gate and up).
PHI3_LAYER_NAMES = dict(LAYER_NAMES, attn_qkv="self_attn.qkv_proj", ffn_up="mlp.gate_up_proj")

# Gemma 3's per-layer norms, GGUF -> HF (Llama's ffn_norm is its post_attention_layernorm).
GEMMA_LAYER_NAMES = dict(LAYER_NAMES, post_attention_norm="post_attention_layernorm",
                         ffn_norm="pre_feedforward_layernorm", post_ffw_norm="post_feedforward_layernorm")


def llama3_factors(head_dim, theta, rs):
    freqs = 1.0 / theta ** (np.arange(0, head_dim, 2) / head_dim)
    low_wavelen = rs["original_max_position_embeddings"] / rs["low_freq_factor"]
    high_wavelen = rs["original_max_position_embeddings"] / rs["high_freq_factor"]
    factors = []
    for freq in freqs:
        wavelen = 2 * np.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(rs["factor"])
        else:
            smooth = (rs["original_max_position_embeddings"] / wavelen - rs["low_freq_factor"]) / (
                rs["high_freq_factor"] - rs["low_freq_factor"])
            factors.append(1.0 / ((1 - smooth) / rs["factor"] + smooth))
    return np.array(factors, dtype=np.float32)


def tiny(variant, out, source):
    v = VARIANTS[variant]
    rng = np.random.default_rng(sum(variant.encode()))
    src = gguf.GGUFReader(source)
    vocab = len(src.fields["tokenizer.ggml.tokens"].data)
    hidden, inter, layers, hd = 64, 128, v.get("layers", 3), v["head_dim"]
    heads, kv = v["heads"], v["kv"]
    gemma = v.get("gemma")
    moe = v.get("moe")
    normal = lambda *shape, s=0.25: (rng.standard_normal(shape) * s).astype(np.float32)
    # Gemma's norms scale by (1 + w): the same multipliers, stored as w in HF folders.
    shift = 1.0 if gemma else 0.0
    norm = lambda n: (1.0 - shift + 0.1 * rng.standard_normal(n)).astype(np.float32)
    # Gemma multiplies embeddings by sqrt(hidden): smaller ones keep the residual from being only
    # the input token (tied, that would make every greedy continuation repeat it).
    embed_scale = 0.15 if gemma else 1.0
    hf = {"model.embed_tokens.weight": normal(vocab, hidden, s=embed_scale), "model.norm.weight": norm(hidden)}
    if not v["tied"]:
        hf["lm_head.weight"] = normal(vocab, hidden, s=0.5)
    for i in range(layers):
        p = f"model.layers.{i}."
        hf[p + "input_layernorm.weight"] = norm(hidden)
        hf[p + "post_attention_layernorm.weight"] = norm(hidden)
        if gemma:
            hf[p + "pre_feedforward_layernorm.weight"] = norm(hidden)
            hf[p + "post_feedforward_layernorm.weight"] = norm(hidden)
        hf[p + "self_attn.q_proj.weight"] = normal(heads * hd, hidden)
        hf[p + "self_attn.k_proj.weight"] = normal(kv * hd, hidden)
        hf[p + "self_attn.v_proj.weight"] = normal(kv * hd, hidden)
        hf[p + "self_attn.o_proj.weight"] = normal(hidden, heads * hd)
        if v["bias"]:
            hf[p + "self_attn.q_proj.bias"] = normal(heads * hd, s=0.5)
            hf[p + "self_attn.k_proj.bias"] = normal(kv * hd, s=0.5)
            hf[p + "self_attn.v_proj.bias"] = normal(kv * hd, s=0.5)
        if v["qk_norm"]:
            hf[p + "self_attn.q_norm.weight"] = norm(hd)
            hf[p + "self_attn.k_norm.weight"] = norm(hd)
        if moe:
            block = "block_sparse_moe." if moe["mixtral"] else "mlp."
            names = ("w1", "w3", "w2") if moe["mixtral"] else ("gate_proj", "up_proj", "down_proj")
            width = moe["width"]
            hf[p + block + "gate.weight"] = normal(moe["experts"], hidden, s=1.0)
            for e in range(moe["experts"]):
                x = f"{p}{block}experts.{e}."
                hf[x + names[0] + ".weight"] = normal(width, hidden)
                hf[x + names[1] + ".weight"] = normal(width, hidden)
                hf[x + names[2] + ".weight"] = normal(hidden, width)
            continue
        hf[p + "mlp.gate_proj.weight"] = normal(inter, hidden)
        hf[p + "mlp.up_proj.weight"] = normal(inter, hidden)
        hf[p + "mlp.down_proj.weight"] = normal(hidden, inter)

    if v.get("partial_rotary"):  # Phi-3 stores q/k/v and gate/up each as one tensor
        for i in range(layers):
            p = f"model.layers.{i}."
            hf[p + "self_attn.qkv_proj.weight"] = np.concatenate(
                [hf.pop(p + f"self_attn.{x}_proj.weight") for x in "qkv"])
            hf[p + "mlp.gate_up_proj.weight"] = np.concatenate(
                [hf.pop(p + "mlp.gate_proj.weight"), hf.pop(p + "mlp.up_proj.weight")])
    hf_dir = os.path.join(out, "hf")
    os.makedirs(hf_dir, exist_ok=True)
    save_file(hf, os.path.join(hf_dir, "model.safetensors"), metadata={"format": "pt"})
    config = {"architectures": [v["hf"]], "model_type": MODEL_TYPES[v["hf"]], "hidden_size": hidden, "intermediate_size": inter,
              "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
              "head_dim": hd, "rms_norm_eps": 1e-6, "rope_theta": v["theta"], "vocab_size": vocab,
              "tie_word_embeddings": v["tied"], "max_position_embeddings": 4096}
    if v["rope_scaling"]:
        config["rope_scaling"] = v["rope_scaling"]
    if gemma:
        # transformers 5 form: one RoPE parameter set per layer type.
        config.update(hidden_activation="gelu_pytorch_tanh",
                      query_pre_attn_scalar=gemma["query_pre_attn_scalar"],
                      sliding_window=gemma["window"],
                      layer_types=["full_attention" if (i + 1) % 6 == 0 else "sliding_attention"
                                   for i in range(layers)],
                      rope_parameters={
                          "full_attention": {"rope_type": "linear", "factor": gemma["rope_factor"],
                                             "rope_theta": v["theta"]},
                          "sliding_attention": {"rope_type": "default",
                                                "rope_theta": gemma["local_theta"]}},
                      attn_logit_softcapping=None, final_logit_softcapping=None,
                      bos_token_id=1, eos_token_id=2, pad_token_id=2)
        del config["rope_theta"]
    if v.get("partial_rotary"):
        config.update(partial_rotary_factor=v["partial_rotary"], sliding_window=None,
                      hidden_act="silu")
    if moe and moe["mixtral"]:
        config.update(num_local_experts=moe["experts"], num_experts_per_tok=moe["used"],
                      intermediate_size=moe["width"], sliding_window=None)
    elif moe:
        config.update(num_experts=moe["experts"], num_experts_per_tok=moe["used"],
                      moe_intermediate_size=moe["width"], norm_topk_prob=True,
                      decoder_sparse_step=1, mlp_only_layers=[])
    with open(os.path.join(hf_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    chat = src.fields["tokenizer.chat_template"].contents()
    write_tokenizer_files(source, hf_dir, chat, "<|im_start|>", "<|im_end|>", 2)

    arch = v["arch"]
    w = gguf.GGUFWriter(os.path.join(out, "model.gguf"), arch)
    w.add_uint32(f"{arch}.context_length", 4096)
    w.add_uint32(f"{arch}.embedding_length", hidden)
    w.add_uint32(f"{arch}.feed_forward_length", moe["width"] if moe and moe["mixtral"] else inter)
    if moe:
        w.add_uint32(f"{arch}.expert_count", moe["experts"])
        w.add_uint32(f"{arch}.expert_used_count", moe["used"])
        if not moe["mixtral"]:
            w.add_uint32(f"{arch}.expert_feed_forward_length", moe["width"])
    w.add_uint32(f"{arch}.block_count", layers)
    w.add_uint32(f"{arch}.attention.head_count", heads)
    w.add_uint32(f"{arch}.attention.head_count_kv", kv)
    w.add_uint32(f"{arch}.attention.key_length", hd)
    w.add_uint32(f"{arch}.attention.value_length", hd)
    w.add_uint32(f"{arch}.rope.dimension_count", int(hd * v.get("partial_rotary", 1.0)))
    w.add_float32(f"{arch}.rope.freq_base", v["theta"])
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)
    w.add_uint32(f"{arch}.vocab_size", vocab)
    if gemma:
        w.add_uint32(f"{arch}.attention.sliding_window", gemma["window"])
        w.add_float32(f"{arch}.rope.freq_base_swa", gemma["local_theta"])
        w.add_string(f"{arch}.rope.scaling.type", "linear")
        w.add_float32(f"{arch}.rope.scaling.factor", gemma["rope_factor"])
    for name, field in src.fields.items():
        if name.startswith("tokenizer."):
            sub = field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
            w.add_key_value(name, field.contents(), field.types[0], sub_type=sub)
    inv = {v2: k for k, v2 in HF_NAMES.items()}
    layer_names = GEMMA_LAYER_NAMES if gemma else PHI3_LAYER_NAMES if arch == "phi3" else LAYER_NAMES
    inv_layer = {v2: k for k, v2 in layer_names.items()}
    for name, t in hf.items():
        if ".experts." in name:
            continue  # written below as fused 3-D tensors
        if name.endswith(".gate.weight"):
            w.add_tensor(f"blk.{name.split('.')[2]}.ffn_gate_inp.weight", np.ascontiguousarray(t))
            continue
        if name in inv:
            gname = inv[name]
        else:
            _, _, layer, a, b, suffix = (name.split(".") + [""])[:6]
            kind = f"{a}.{b}" if suffix else a
            suffix = suffix or b
            gname = f"blk.{layer}.{inv_layer[kind]}.{suffix}"
        if arch == "llama" and name.endswith("q_proj.weight"):
            t = permute(t, heads)
        elif arch == "llama" and name.endswith("k_proj.weight"):
            t = permute(t, kv)
        elif gemma and name.endswith("norm.weight"):
            t = t + np.float32(1.0)
        w.add_tensor(gname, np.ascontiguousarray(t))
    if v["rope_scaling"]:
        w.add_tensor("rope_freqs.weight", llama3_factors(hd, v["theta"], v["rope_scaling"]))
    for i in range(layers if moe else 0):
        block = "block_sparse_moe." if moe["mixtral"] else "mlp."
        names = ("w1", "w3", "w2") if moe["mixtral"] else ("gate_proj", "up_proj", "down_proj")
        for gguf_kind, hf_kind in zip(("gate", "up", "down"), names):
            fused = np.stack([hf[f"model.layers.{i}.{block}experts.{e}.{hf_kind}.weight"]
                              for e in range(moe["experts"])])
            w.add_tensor(f"blk.{i}.ffn_{gguf_kind}_exps.weight", np.ascontiguousarray(fused))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_bf16_safetensors(path, tensors):
    """safetensors with BF16 payloads (numpy has no bfloat16): float32 rounded to nearest even."""
    header, offset, blobs = {}, 0, []
    for name, t in tensors.items():
        bits = t.astype(np.float32).view(np.uint32)
        bf16 = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
        blob = bf16.tobytes()
        header[name] = {"dtype": "BF16", "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def large(out, source):
    rng = np.random.default_rng(7)
    hidden, inter, layers, heads, kv, hd, vocab = 2048, 5632, 16, 16, 4, 128, 2048
    normal = lambda *shape: (rng.standard_normal(shape, dtype=np.float32) * 0.02)
    hf = {"model.embed_tokens.weight": normal(vocab, hidden), "model.norm.weight": np.ones(hidden, np.float32)}
    for i in range(layers):
        p = f"model.layers.{i}."
        hf[p + "input_layernorm.weight"] = np.ones(hidden, np.float32)
        hf[p + "post_attention_layernorm.weight"] = np.ones(hidden, np.float32)
        hf[p + "self_attn.q_proj.weight"] = normal(heads * hd, hidden)
        hf[p + "self_attn.k_proj.weight"] = normal(kv * hd, hidden)
        hf[p + "self_attn.v_proj.weight"] = normal(kv * hd, hidden)
        hf[p + "self_attn.o_proj.weight"] = normal(hidden, heads * hd)
        hf[p + "mlp.gate_proj.weight"] = normal(inter, hidden)
        hf[p + "mlp.up_proj.weight"] = normal(inter, hidden)
        hf[p + "mlp.down_proj.weight"] = normal(hidden, inter)
    os.makedirs(out, exist_ok=True)
    write_bf16_safetensors(os.path.join(out, "model.safetensors"), hf)
    config = {"architectures": ["LlamaForCausalLM"], "hidden_size": hidden, "intermediate_size": inter,
              "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
              "head_dim": hd, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "vocab_size": vocab,
              "tie_word_embeddings": True, "max_position_embeddings": 4096, "torch_dtype": "bfloat16"}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    chat = gguf.GGUFReader(source).fields["tokenizer.chat_template"].contents()
    write_tokenizer_files(source, out, chat, "<|im_start|>", "<|im_end|>", 2)


if __name__ == "__main__":
    if sys.argv[1] == "hf-from-gguf":
        hf_from_gguf(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "tiny":
        tiny(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "large":
        large(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown mode {sys.argv[1]}")
