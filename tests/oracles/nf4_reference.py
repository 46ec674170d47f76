#!/usr/bin/env python3
"""NF4 reference (numpy), written from bitsandbytes' documented algorithm, since bitsandbytes
itself needs a CUDA build of torch that cannot be installed here:
  blocks of 64 over the row-major flattened weight; absmax per block; x/absmax goes to the
  nearest of the 16 NF4 codes (exact midpoints round down, as bnb's `x > midpoint` tree);
  two codes per byte, the first element in the high nibble.

  nf4_reference.py OUT_DIR     writes weight.f32 (96 x 64 float32), packed.u8, absmax.f32
"""
import sys

import numpy as np

NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
                0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=np.float32)
MIDPOINTS = (NF4[:-1] + NF4[1:]) / np.float32(2)


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


if __name__ == "__main__":
    main(sys.argv[1])
