#!/usr/bin/env python3
"""Hugging Face dataset folders on disk, written and read back by the `datasets` library (PyPI).

  hf_dataset_fixtures.py OUT_DIR
      Writes one folder per case under OUT_DIR and OUT_DIR/cases.json, an object: for each case, the folder,
      the split and column asked, and the rows `datasets` itself reads for them (the oracle), read
      the way Heretic's load_prompts reads a local folder: load_from_disk for a save_to_disk
      folder, load_dataset(folder, split=NAME) for any other.
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import datasets  # noqa: E402
import pyarrow as pa  # noqa: E402

datasets.disable_progress_bars()
datasets.logging.set_verbosity_error()

out = sys.argv[1]
cases = {}

ROWS = [f"prompt {i}: ünïcödé ✓ {'x' * i}" for i in range(23)] + ["", "  spaced  "]


def rows_of(name, split, column, folder, dataset):
    cases[name] = {"folder": folder, "split": split, "column": column,
                   "rows": list(dataset[column])}


# Dataset.save_to_disk in three shards (three Arrow IPC stream files listed by state.json).
folder = os.path.join(out, "saved")
table = datasets.Dataset.from_dict({"id": list(range(len(ROWS))), "text": ROWS,
                                    "note": [r[::-1] for r in ROWS]})
table.save_to_disk(folder, num_shards=3)
rows_of("saved", "train", "text", folder, datasets.load_from_disk(folder))
rows_of("saved_note", "train", "note", folder, datasets.load_from_disk(folder))

# DatasetDict.save_to_disk: one folder per split.
folder = os.path.join(out, "saved_dict")
datasets.DatasetDict({
    "train": datasets.Dataset.from_dict({"text": ROWS[:15]}),
    "test": datasets.Dataset.from_dict({"text": ROWS[15:]}),
}).save_to_disk(folder)
rows_of("saved_dict_test", "test", "text", folder, datasets.load_from_disk(folder)["test"])
rows_of("saved_dict_train", "train", "text", folder, datasets.load_from_disk(folder)["train"])

# A Hub snapshot's layout: data/<split>-NNNNN-of-NNNNN.csv, README.md beside. (pandas reads an
# empty CSV field as a missing value, None, which is no prompt: none here.)
CSV_ROWS = [r for r in ROWS if r]
folder = os.path.join(out, "hub_csv")
os.makedirs(os.path.join(folder, "data"))
with open(os.path.join(folder, "README.md"), "w") as f:
    f.write("# a dataset card\n")
datasets.Dataset.from_dict({"text": CSV_ROWS[:10]}).to_csv(
    os.path.join(folder, "data", "train-00000-of-00002.csv"), index=False)
datasets.Dataset.from_dict({"text": CSV_ROWS[10:20]}).to_csv(
    os.path.join(folder, "data", "train-00001-of-00002.csv"), index=False)
datasets.Dataset.from_dict({"text": CSV_ROWS[20:]}).to_csv(
    os.path.join(folder, "data", "test-00000-of-00001.csv"), index=False)
for split in ("train", "test"):
    rows_of(f"hub_csv_{split}", split, "text", folder, datasets.load_dataset(folder, split=split))

# Splits named by folders: train/*.jsonl, evaluation/*.jsonl (a keyword of the test split).
folder = os.path.join(out, "by_folder")
for split, part in (("train", ROWS[:12]), ("evaluation", ROWS[12:])):
    os.makedirs(os.path.join(folder, split))
    datasets.Dataset.from_dict({"prompt": part}).to_json(
        os.path.join(folder, split, "part.jsonl"), lines=True)
for split in ("train", "test"):
    rows_of(f"by_folder_{split}", split, "prompt", folder,
            datasets.load_dataset(folder, split=split))

# Text files naming no split: every file is "train", every line a row (blank ones too).
folder = os.path.join(out, "plain_text")
os.makedirs(folder)
with open(os.path.join(folder, "a.txt"), "w") as f:
    f.write("first line\n\nthird line\n")
with open(os.path.join(folder, "b.txt"), "w") as f:
    f.write("  b one  \nb two")
rows_of("plain_text", "train", "text", folder, datasets.load_dataset(folder, split="train"))

# Arrow IPC streams as Hub snapshots hold them (data/<split>-....arrow).
folder = os.path.join(out, "hub_arrow")
os.makedirs(os.path.join(folder, "data"))
for split, part in (("train", ROWS[:18]), ("test", ROWS[18:])):
    t = pa.table({"text": pa.array(part, type=pa.large_string())})
    with pa.ipc.new_stream(os.path.join(folder, "data", f"{split}-00000-of-00001.arrow"),
                           t.schema) as w:
        for batch in t.to_batches(max_chunksize=5):
            w.write_batch(batch)
for split in ("train", "test"):
    rows_of(f"hub_arrow_{split}", split, "text", folder,
            datasets.load_dataset(folder, split=split))

# The IPC *file* format (pyarrow.ipc.new_file), which `datasets` does not write; pyarrow reads
# it back as the oracle.
folder = os.path.join(out, "ipc_file")
os.makedirs(folder)
path = os.path.join(folder, "table.arrow")
t = pa.table({"text": pa.array(ROWS, type=pa.string_view())})
with pa.ipc.new_file(path, t.schema) as w:
    for batch in t.to_batches(max_chunksize=7):
        w.write_batch(batch)
cases["ipc_file"] = {"folder": folder, "split": "train", "column": "text",
                     "rows": pa.ipc.open_file(path).read_all().column("text").to_pylist()}

# A Hub snapshot of Parquet files (what the Hub serves, and Heretic's default datasets are):
# data/train in two shards of several row groups each, data/test in one, a large_string column
# beside; read back with load_dataset(folder, split=...).
import pyarrow.parquet as pq  # noqa: E402
folder = os.path.join(out, "hub_parquet")
os.makedirs(os.path.join(folder, "data"))
for name, rows in [("train-00000-of-00002", ROWS[:12]), ("train-00001-of-00002", ROWS[12:20]),
                   ("test-00000-of-00001", ROWS[20:])]:
    pq.write_table(pa.table({"text": pa.array(rows, type=pa.string()),
                             "long": pa.array([r.upper() for r in rows], type=pa.large_string())}),
                   os.path.join(folder, "data", name + ".parquet"), row_group_size=5)
for split in ("train", "test"):
    rows_of(f"hub_parquet_{split}", split, "text", folder,
            datasets.load_dataset(folder, split=split))
rows_of("hub_parquet_long", "train", "long", folder, datasets.load_dataset(folder, split="train"))

# Bad inputs, each in its own folder; the test checks the error names what is wrong.
bad = os.path.join(out, "bad")
os.makedirs(bad)
folder = os.path.join(bad, "nulls")
datasets.Dataset.from_dict({"text": ["a", None, "c"]}).save_to_disk(folder)
folder = os.path.join(bad, "numbers")
datasets.Dataset.from_dict({"text": [1, 2, 3]}).save_to_disk(folder)
folder = os.path.join(bad, "truncated")
datasets.Dataset.from_dict({"text": ROWS}).save_to_disk(folder)
arrow = [f for f in os.listdir(folder) if f.endswith(".arrow")][0]
with open(os.path.join(folder, arrow), "r+b") as f:
    f.truncate(os.path.getsize(os.path.join(folder, arrow)) // 2)
folder = os.path.join(bad, "parquet_truncated")
os.makedirs(os.path.join(folder, "data"))
path = os.path.join(folder, "data", "train-00000-of-00001.parquet")
datasets.Dataset.from_dict({"text": ROWS}).to_parquet(path)
with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)
folder = os.path.join(bad, "parquet_numbers")
os.makedirs(os.path.join(folder, "data"))
datasets.Dataset.from_dict({"text": [1, 2, 3]}).to_parquet(
    os.path.join(folder, "data", "train-00000-of-00001.parquet"))

with open(os.path.join(out, "cases.json"), "w") as f:
    json.dump(cases, f)
