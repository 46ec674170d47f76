#!/usr/bin/env python3
"""safetensors oracle: the `safetensors` package (PyPI).

  safetensors_oracle.py write OUT_DIR     writes OUT_DIR/fixture.safetensors with one tensor of
                                          every dtype, and OUT_DIR/<name>.bin with its raw bytes
  safetensors_oracle.py read MODEL_DIR OUT_DIR
                                          loads a (sharded) folder through its index with
                                          safetensors and dumps OUT_DIR/<name>.bin plus
                                          OUT_DIR/shapes.json {name: [dtype, shape]}
"""
import json
import os
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file


def write(out):
    rng = np.random.default_rng(5)
    tensors = {
        "f64": rng.standard_normal((3, 4)),
        "f32": rng.standard_normal((2, 3, 4)).astype(np.float32),
        "f16": rng.standard_normal((5,)).astype(np.float16),
        "i64": rng.integers(-2**40, 2**40, (4,)),
        "i32": rng.integers(-2**20, 2**20, (2, 2)).astype(np.int32),
        "i16": rng.integers(-300, 300, (3,)).astype(np.int16),
        "i8": rng.integers(-100, 100, (7,)).astype(np.int8),
        "u8": rng.integers(0, 255, (6,)).astype(np.uint8),
        "bool": rng.integers(0, 2, (5,)).astype(bool),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }
    save_file(tensors, os.path.join(out, "fixture.safetensors"), metadata={"format": "pt", "who": "oracle"})
    for name, t in tensors.items():
        np.ascontiguousarray(t).tofile(os.path.join(out, name + ".bin"))


def read(model_dir, out):
    index_path = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    shapes = {}
    for name in files:
        with safe_open(os.path.join(model_dir, name), framework="np") as f:
            for key in f.keys():
                t = f.get_tensor(key)
                t.tofile(os.path.join(out, key + ".bin"))
                shapes[key] = [str(t.dtype), list(t.shape)]
    with open(os.path.join(out, "shapes.json"), "w") as f:
        json.dump(shapes, f)


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2])
    elif sys.argv[1] == "read":
        read(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown mode {sys.argv[1]}")
