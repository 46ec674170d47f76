#!/usr/bin/env python3
"""NF4 reference (numpy), written from bitsandbytes' documented algorithm, since bitsandbytes
itself needs a CUDA build of torch that cannot be installed here:
  blocks of 64 over the row-major flattened weight; absmax per block; x/absmax goes to the
  nearest of the 16 NF4 codes (exact midpoints round down, as bnb's `x > midpoint` tree);
  two codes per byte, the first element in the high nibble.

  Double quantization (bnb's compress_statistics): the absmax values minus their mean (the
  offset) are quantized in blocks of 256 with the signed dynamic 8-bit map (create_dynamic_map:
  for exponents 10^-6..10^0, the midpoints of 2^i + 1 points from 0.1 to 1, positive and
  negative, then 0 and 1, sorted), each block scaled by its absmax ("absmax2"), nearest code
  with midpoints rounding down. Dequantized: code[c] * (map[a] * absmax2 + offset).

  nf4_reference.py OUT_DIR     writes weight.f32 (96 x 64 float32), packed.u8, absmax.f32, and
                               for double quantization dq_weight.f32 (160 x 192: 480 blocks, two
                               absmax blocks, the second partial), dq_packed.u8, dq_codes.u8,
                               dq_absmax2.f32, dq_offset.f32, dq_dequantized.f32
"""
import sys

import numpy as np

NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
                0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=np.float32)
MIDPOINTS = (NF4[:-1] + NF4[1:]) / np.float32(2)


def dynamic_map():
    data = []
    for i in range(7):
        items = 2 ** i + 1
        boundaries = np.array([0.1 + 0.9 * k / (items - 1) for k in range(items)], dtype=np.float32)
        means = (boundaries[:-1] + boundaries[1:]) / np.float32(2)
        scale = 10.0 ** (-6 + i)
        data += [float(np.float32(scale * float(m))) for m in means]
        data += [float(np.float32(-scale * float(m))) for m in means]
    data += [0.0, 1.0]
    return np.array(sorted(data), dtype=np.float32)


def nearest(table, x):
    mids = (table[:-1] + table[1:]) / np.float32(2)
    return np.searchsorted(mids, x, side="left").astype(np.uint8)


def double_quant(out):
    rng = np.random.default_rng(12)
    w = (rng.standard_normal((160, 192)) * 0.03).astype(np.float32)
    w[7, :64] = 0.0                    # an all-zero block: absmax 0, below the mean
    blocks = w.reshape(-1, 64)
    absmax = np.abs(blocks).max(axis=1).astype(np.float32)
    inv = np.where(absmax == 0, np.float32(0), np.float32(1) / np.where(absmax == 0, 1, absmax))
    codes = nearest(NF4, blocks * inv[:, None]).reshape(-1)
    packed = ((codes[0::2] << 4) | codes[1::2]).astype(np.uint8)
    offset = np.float32(absmax.astype(np.float64).mean())
    centered = (absmax - offset).astype(np.float32)
    table = dynamic_map()
    dq_codes = np.empty(len(centered), dtype=np.uint8)
    absmax2 = []
    for start in range(0, len(centered), 256):
        part = centered[start:start + 256]
        m = np.float32(np.abs(part).max())
        absmax2.append(m)
        inv2 = np.float32(0) if m == 0 else np.float32(1) / m
        dq_codes[start:start + 256] = nearest(table, part * inv2)
    absmax2 = np.array(absmax2, dtype=np.float32)
    stored = (table[dq_codes] * np.repeat(absmax2, 256)[:len(centered)]).astype(np.float32) + offset
    dequantized = (NF4[codes].reshape(-1, 64) * stored[:, None]).astype(np.float32)
    w.tofile(f"{out}/dq_weight.f32")
    packed.tofile(f"{out}/dq_packed.u8")
    dq_codes.tofile(f"{out}/dq_codes.u8")
    absmax2.tofile(f"{out}/dq_absmax2.f32")
    np.array([offset], dtype=np.float32).tofile(f"{out}/dq_offset.f32")
    dequantized.tofile(f"{out}/dq_dequantized.f32")


def main(out):
    rng = np.random.default_rng(11)
    w = (rng.standard_normal((96, 64)) * 0.05).astype(np.float32)
    w[3, :] = 0.0                      # an all-zero block
    w[5, 7] = 0.9                      # an outlier
    blocks = w.reshape(-1, 64)
    absmax = np.abs(blocks).max(axis=1).astype(np.float32)
    inv = np.where(absmax == 0, np.float32(0), np.float32(1) / np.where(absmax == 0, 1, absmax))
    scaled = blocks * inv[:, None]
    codes = np.searchsorted(MIDPOINTS, scaled, side="left").astype(np.uint8)  # x > mid -> upper
    flat = codes.reshape(-1)
    packed = (flat[0::2] << 4) | flat[1::2]
    w.tofile(f"{out}/weight.f32")
    packed.astype(np.uint8).tofile(f"{out}/packed.u8")
    absmax.tofile(f"{out}/absmax.f32")
    double_quant(out)


if __name__ == "__main__":
    main(sys.argv[1])
