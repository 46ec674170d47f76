#!/usr/bin/env python3
"""Independent GGUF oracle for tests: the `gguf` package from PyPI (llama.cpp's own Python reader).

  gguf_oracle.py dequant MODEL.gguf OUT_DIR NAME...   writes OUT_DIR/NAME.f32 (raw float32, GGUF
                                                      element order) for each tensor
  gguf_oracle.py synth OUT.gguf OUT_DIR               writes a GGUF with random blocks of every
                                                      type schism reads, plus the expected floats
"""
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize


def write_f32(path, array):
    np.asarray(array, dtype=np.float32).tofile(path)


def dequant(model, out_dir, names):
    reader = gguf.GGUFReader(model)
    by_name = {t.name: t for t in reader.tensors}
    for name in names:
        t = by_name[name]
        write_f32(f"{out_dir}/{name}.f32", dequantize(t.data, t.tensor_type).reshape(-1))


def random_blocks(rng, qtype, n_blocks):
    """Random quantized blocks whose f16 scale fields hold finite, moderate values."""
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    def put_half(col):
        raw[:, col:col + 2] = rng.uniform(-2.0, 2.0, n_blocks).astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
    if qtype in (T.Q4_0, T.Q8_0, T.Q5_0):
        put_half(0)
    elif qtype in (T.Q4_1, T.Q4_K, T.Q5_1, T.Q5_K):
        put_half(0)
        put_half(2)
    elif qtype in (T.Q6_K, T.Q3_K):
        put_half(type_size - 2)
    elif qtype == T.Q2_K:
        put_half(type_size - 4)
        put_half(type_size - 2)
    elif qtype in (T.IQ4_NL, T.IQ4_XS):
        put_half(0)
    elif qtype in (T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ3_XXS, T.IQ3_S, T.IQ1_S):
        put_half(0)
    elif qtype == T.IQ1_M:  # the f16 scale is the top nibbles of the four u16 scale words
        h = rng.uniform(-2.0, 2.0, n_blocks).astype(np.float16).view(np.uint16)
        words = raw[:, 48:56].copy().view(np.uint16)
        for i in range(4):
            words[:, i] = (words[:, i] & 0x0FFF) | (((h >> (4 * i)) & 0xF) << 12)
        raw[:, 48:56] = words.view(np.uint8)
    elif qtype in (T.TQ1_0, T.TQ2_0):
        put_half(type_size - 2)
    elif qtype == T.MXFP4:
        raw[:, 0] = rng.integers(100, 150, n_blocks, dtype=np.uint8)  # e8m0 exponents near 2^0
    elif qtype == T.NVFP4:  # ue4m3 scales: zero, 0x7F (zero too), subnormals, normals, top bit set
        special = [0x00, 0x7F, 0x01, 0x07, 0x08, 0x38, 0x3F, 0x40, 0x7E, 0x80, 0xFF, 0xB8]
        scales = np.resize(np.array(special, dtype=np.uint8), n_blocks * 4)
        raw[:, :4] = scales.reshape(n_blocks, 4)
    return raw


def synth(out_gguf, out_dir):
    rng = np.random.default_rng(1234)
    writer = gguf.GGUFWriter(out_gguf, "llama")
    writer.add_uint32("test.answer", 42)
    writer.add_string("test.greeting", "héllo")
    writer.add_array("test.list", [1, 2, 3])
    writer.add_float32("test.pi", 3.25)
    rows = 3
    for qtype in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_NL,
                  T.IQ4_XS, T.MXFP4, T.NVFP4, T.TQ1_0, T.TQ2_0, T.IQ1_S, T.IQ1_M, T.IQ2_XXS, T.IQ2_XS,
                  T.IQ2_S, T.IQ3_XXS, T.IQ3_S):
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        cols = block_size * 2
        raw = random_blocks(rng, qtype, rows * 2).reshape(rows, 2 * type_size)
        writer.add_tensor(qtype.name, raw, raw_shape=(rows, 2 * type_size), raw_dtype=qtype)
        write_f32(f"{out_dir}/{qtype.name}.f32", dequantize(raw, qtype).reshape(-1))
    f32 = rng.standard_normal((rows, 8)).astype(np.float32)
    f16 = rng.standard_normal((rows, 8)).astype(np.float16)
    writer.add_tensor("F32", f32)
    writer.add_tensor("F16", f16)
    bf16_bits = (f32.view(np.uint32) >> 16).astype(np.uint16)
    writer.add_tensor("BF16", bf16_bits, raw_shape=(rows, 8), raw_dtype=T.BF16)
    write_f32(f"{out_dir}/F32.f32", f32.reshape(-1))
    write_f32(f"{out_dir}/F16.f32", f16.astype(np.float32).reshape(-1))
    write_f32(f"{out_dir}/BF16.f32", (bf16_bits.astype(np.uint32) << 16).view(np.float32).reshape(-1))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    if sys.argv[1] == "dequant":
        dequant(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif sys.argv[1] == "synth":
        synth(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown mode {sys.argv[1]}")
