#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora into tests/fuzz/corpus/<target>/ (committed; re-run
after changing a format): small valid inputs of each reader, so the fuzzers start from inputs
that get past the first checks.   python3 tests/fuzz/make_seeds.py  (gguf, numpy: scripts/setup)
"""
import json
import os
import struct

import gguf
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def out(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


# A byte-level BPE vocabulary of a few tokens, shared by the GGUF and tokenizer.json seeds.
TOKENS = ["<|im_start|>", "<|im_end|>", "H", "e", "l", "o", "Ġ", "w", "r", "d", "He", "ll", "llo",
          "Hello", "Ġw", "Ġwor", "Ġworld", "\n", "Ċ"]
MERGES = ["H e", "l l", "ll o", "He llo", "Ġ w", "Ġw o", "r l", "Ġwo rld"]


def gguf_seed(name, arch="llama", quant=None, with_tokenizer=True):
    path = os.path.join("/tmp", f"schism_seed_{os.getpid()}.gguf")
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    if with_tokenizer:
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("qwen2")
        w.add_token_list(TOKENS)
        w.add_token_types([3, 3] + [1] * (len(TOKENS) - 2))
        w.add_token_merges(MERGES)
        w.add_bos_token_id(0)
        w.add_eos_token_id(1)
        w.add_chat_template("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}")
    rng = np.random.default_rng(0)
    w.add_tensor("token_embd.weight", rng.standard_normal((len(TOKENS), 8), dtype=np.float32))
    w.add_tensor("output_norm.weight", np.ones(8, dtype=np.float16))
    if quant is not None:
        data = rng.standard_normal((2, 32), dtype=np.float32)
        w.add_tensor("blk.0.attn_q.weight", gguf.quants.quantize(data, quant), raw_dtype=quant)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(path, "rb") as f:
        out("gguf_reader_fuzz", name, f.read())
    os.unlink(path)


gguf_seed("llama_f32_f16.gguf")
gguf_seed("qwen2_q8_0.gguf", arch="qwen2", quant=gguf.GGMLQuantizationType.Q8_0)
gguf_seed("q4_0_no_tokenizer.gguf", quant=gguf.GGMLQuantizationType.Q4_0, with_tokenizer=False)


def safetensors_seed(name, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    for tname, (dtype, shape, raw) in tensors.items():
        header[tname] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    out("safetensors_fuzz", name, struct.pack("<Q", len(text)) + text + b"".join(blobs))


safetensors_seed("f32_bf16.safetensors", {
    "model.embed_tokens.weight": ("F32", [2, 3], np.arange(6, dtype=np.float32).tobytes()),
    "model.norm.weight": ("BF16", [4], (np.arange(4, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()),
}, {"format": "pt"})
safetensors_seed("f16_f64.safetensors", {
    "a": ("F16", [3], np.ones(3, dtype=np.float16).tobytes()),
    "b": ("F64", [1, 2], np.array([1.5, -2], dtype=np.float64).tobytes()),
    "c": ("I32", [0], b""),
})


def tokenizer_json(byte_fallback):
    vocab = {t: i for i, t in enumerate(TOKENS)}
    spec = {
        "version": "1.0",
        "added_tokens": [{"id": 0, "content": "<|im_start|>", "special": True},
                         {"id": 1, "content": "<|im_end|>", "special": True}],
        "normalizer": None if not byte_fallback else
        {"type": "Sequence", "normalizers": [{"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
        "model": {"type": "BPE", "vocab": vocab, "merges": MERGES, "byte_fallback": byte_fallback,
                  "unk_token": None},
    }
    return json.dumps(spec, ensure_ascii=False, indent=1)


out("tokenizer_json_fuzz", "byte_level.json", tokenizer_json(False))
out("tokenizer_json_fuzz", "sentencepiece_style.json", tokenizer_json(True))

TEMPLATES = {
    "chatml.jinja": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
    "llama3.jinja": "{{ bos_token }}{% for message in messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
    "gemma_macro.jinja": "{%- macro role(r) -%}{{ 'model' if r == 'assistant' else r }}{%- endmacro -%}{%- if messages[0]['role'] == 'system' -%}{%- set first = messages[0]['content'] + '\n\n' -%}{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first = '' -%}{%- set loop_messages = messages -%}{%- endif -%}{%- for m in loop_messages -%}{%- if (m['role'] == 'user') != (loop.index0 % 2 == 0) -%}{{ raise_exception('roles must alternate') }}{%- endif -%}<start_of_turn>{{ role(m['role']) }}\n{{ (first if loop.first else '') ~ m['content'] | trim }}<end_of_turn>\n{%- endfor -%}{%- if add_generation_prompt -%}<start_of_turn>model\n{%- endif -%}",
    "tools_namespace.jinja": "{%- set ns = namespace(found=false, n=0) -%}{%- for t in tools | default([]) -%}{%- set ns.n = ns.n + 1 -%}{{ t.name | upper }}{{ ',' if not loop.last }}{%- endfor -%}{%- for m in messages -%}{%- if m.content is string -%}{{ m.content | replace('a', 'b') | length }}{%- else -%}{%- for part in m.content -%}{{ part.text | tojson }}{%- endfor -%}{%- endif -%}{%- endfor -%}{{ range(3) | list | join('-') }}{{ ns.n }}{{ '%d' % 7 }}{{ {'k': [1, 2.5, none, true]} | tojson }}",
}
for name, text in TEMPLATES.items():
    out("chat_template_fuzz", name, text)

SPEC = json.dumps({"model": "/models/m.gguf", "n_trials": 4, "n_startup_trials": 2})
RECORDS = {
    "submitted.json": {"order": 0, "spec": SPEC, "type": "submitted"},
    "prepared.json": {"baseline_refusals": 41, "num_layers": 24, "response_prefix": "<think>", "type": "prepared"},
    "prepare_failed.json": {"reason": "no such file", "type": "prepare_failed"},
    "asked.json": {"number": 0, "params": {"attn.o_proj.max_weight": 1.21, "direction_scope": 1.0,
                                           "direction_index": 0.5}, "type": "asked"},
    "leased.json": {"attempt": 1, "lease": "l3f", "number": 0, "type": "leased", "worker": "w9c"},
    "completed.json": {"kl_divergence": 0.0412, "number": 0, "refusal_prompts": 100, "refusals": 12,
                       "type": "completed"},
    "requeued.json": {"number": 0, "reason": "lease expired", "worker": "w9c", "cause": "expired",
                      "type": "requeued"},
    "failed.json": {"number": 3, "reason": "nan", "worker": "w1", "cause": "worker_failed",
                    "error": "NaN KL divergence", "type": "failed"},
    "study_failed.json": {"reason": "too many failed trials", "type": "study_failed"},
    "finished.json": {"type": "finished"},
    "cancelled.json": {"type": "cancelled"},
    "export.json": {"job": json.dumps({"exportId": "e1", "studyId": "s1", "trial": "2", "dest": "best",
                                       "state": "EXPORT_STATE_QUEUED"}), "type": "export"},
}
for name, record in RECORDS.items():
    out("journal_record_fuzz", name, json.dumps(record, separators=(",", ":")))

CONFIGS = {
    "heretic.toml": '''model = "Qwen/Qwen2.5-0.5B-Instruct"
n_trials = 200
n_startup_trials = 60
batch_size = 0
max_batch_size = 128
max_response_length = 100
kl_divergence_scale = 1.0
kl_divergence_target = 0.01
refusal_markers = ["sorry", "i can't", "as an ai"]
dtypes = ["auto", "float16"]
quantization = "bnb_4bit"
row_normalization = "full"
orthogonalize_direction = true
winsorization_quantile = 0.95
[good_prompts]
dataset = "mlabonne/harmless_alpaca"
split = "train[:400]"
column = "text"
[bad_prompts]
dataset = "mlabonne/harmful_behaviors"
split = "train[:400]"
column = "text"
''',
    "cluster.toml": '''model = "/models/m.gguf"
n_trials = 4
n_startup_trials = 2
max_response_length = 16
trials_per_lease = 2
[good_prompts]
path = "/data/harmless_train.txt"
split = "[:8]"
[bad_prompts]
path = "/data/harmful_train.txt"
split = "[:8]"
[scorer.KeywordRate.prompts]
path = "/data/harmful_test.txt"
split = "[:8]"
[scorer.KLDivergence.prompts]
path = "/data/harmless_test.txt"
split = "[:4]"
[cluster]
max_attempts = 3
lease_seconds = 600
max_failed_trials = 2
[export]
format = "both"
max_shard_size = "2GB"
''',
}
for name, text in CONFIGS.items():
    out("study_config_fuzz", name, text)
# config.json of each family the reader knows, with the branches it takes (biases, Gemma's layer
# types and per-type RoPE, Mistral's window, Qwen3-MoE's dense layers, Llama 3 RoPE scaling,
# Phi-3's partial rotary factor, a vision-language wrapper's text_config).
SIZES = {"vocab_size": 32, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 4,
         "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8, "rms_norm_eps": 1e-6,
         "max_position_embeddings": 128}
MODEL_CONFIGS = {
    "qwen2.json": {"architectures": ["Qwen2ForCausalLM"], "attention_bias": True,
                   "sliding_window": None, "rope_theta": 1000000.0},
    "gemma3.json": {"architectures": ["Gemma3ForCausalLM"],
                    "layer_types": ["sliding_attention", "sliding_attention", "sliding_attention",
                                    "full_attention"],
                    "sliding_window": 16,
                    "rope_parameters": {"full_attention": {"rope_type": "default",
                                                           "rope_theta": 1000000.0},
                                        "sliding_attention": {"rope_type": "default",
                                                              "rope_theta": 10000.0}}},
    "mixtral.json": {"architectures": ["MixtralForCausalLM"], "num_local_experts": 4,
                     "num_experts_per_tok": 2, "sliding_window": 64},
    "qwen3_moe.json": {"architectures": ["Qwen3MoeForCausalLM"], "num_experts": 4,
                       "num_experts_per_tok": 2, "moe_intermediate_size": 8,
                       "decoder_sparse_step": 1, "mlp_only_layers": [0]},
    "llama3.json": {"architectures": ["LlamaForCausalLM"],
                    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0,
                                     "original_max_position_embeddings": 64}},
    "phi3.json": {"architectures": ["Phi3ForCausalLM"], "partial_rotary_factor": 0.5,
                  "sliding_window": 2047},
    "qwen2_vl.json": {"architectures": ["Qwen2VLForConditionalGeneration"],
                      "text_config": dict(SIZES, rope_scaling={"type": "mrope",
                                                               "mrope_section": [1, 1, 2]})},
}
for name, extra in MODEL_CONFIGS.items():
    out("model_config_fuzz", name, json.dumps(dict(SIZES, **extra)))

# model.safetensors.index.json over safetensors_index_fuzz's two fixed shards (tensors a and b).
INDEXES = {
    "two_shards.json": {"metadata": {"total_size": 32},
                        "weight_map": {"a": "model-00001-of-00002.safetensors",
                                       "b": "model-00002-of-00002.safetensors"}},
    "missing_tensor.json": {"weight_map": {"a": "model-00001-of-00002.safetensors",
                                           "c": "model-00002-of-00002.safetensors"}},
    "escaping_shard.json": {"weight_map": {"a": "../model-00001-of-00002.safetensors"}},
}
for name, index in INDEXES.items():
    out("safetensors_index_fuzz", name, json.dumps(index))
# tokenizer_config.json, a NUL byte, generation_config.json (hf_tokenizer_files_fuzz): special
# tokens as strings and as {"content": ...} objects, eos_token_id as an id and as a list.
TOKENIZER_FILES = {
    "strings.bin": ({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "H",
                     "add_bos_token": True, "chat_template": "{{ messages[0]['content'] }}"},
                    {"eos_token_id": 1}),
    "objects.bin": ({"eos_token": {"content": "<|im_end|>", "special": True},
                     "add_bos_token": None}, {"eos_token_id": [1, 0]}),
    "no_generation_config.bin": ({"eos_token": "<|im_end|>"}, None),
}
for name, (tc, gen) in TOKENIZER_FILES.items():
    data = json.dumps(tc)
    if gen is not None:
        data += "\0" + json.dumps(gen)
    out("hf_tokenizer_files_fuzz", name, data)
print("seeds written to", os.path.join(HERE, "corpus"))
