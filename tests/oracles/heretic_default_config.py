#!/usr/bin/env python3
"""Heretic 1.4.0's defaults as a config.toml, from its own Settings class.

  heretic_default_config.py MODEL DATA_DIR OUT_DIR

Heretic's repository keeps config.default.toml: every setting at its default. The wheel does not
ship that file, so this writes the same from heretic.config.Settings: every field (model_fields,
also those model_dump leaves out) whose default is not None (TOML has no null; config.default.toml comments those out), serialized by tomli_w (one of
Heretic's own dependencies), with `model` = MODEL and the four prompt sets pointed at DATA_DIR's
text files (harmless/harmful train and test) with Heretic's default slices. Writes
  OUT_DIR/config.default.toml
  OUT_DIR/defaults.json   the same values as JSON (enums as their values)
"""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from heretic_support import ensure_heretic, make_settings  # noqa: E402

FILES = {"good_prompts": "harmless_train.txt", "bad_prompts": "harmful_train.txt",
         "good_evaluation_prompts": "harmless_test.txt",
         "bad_evaluation_prompts": "harmful_test.txt"}


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    model, data_dir, out_dir = sys.argv[1], os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3])
    ensure_heretic(__file__)
    os.makedirs(out_dir, exist_ok=True)
    os.chdir(tempfile.mkdtemp())  # no config.toml here
    import tomli_w

    settings = make_settings(hub_commits=False, model=model)
    from pydantic import TypeAdapter

    values = {}
    for name, field in type(settings).model_fields.items():
        # Every field, also those model_dump leaves out (the interactive ones, e.g. print_responses).
        value = TypeAdapter(field.annotation).dump_python(getattr(settings, name), mode="json")
        if value is None:
            continue
        if name in FILES:
            # A text file takes Heretic's slice without the split's name ("train[:400]" -> "[:400]").
            split = value["split"]
            value = {k: v for k, v in value.items() if v is not None}
            value["dataset"] = os.path.join(data_dir, FILES[name])
            value["split"] = split[split.index("["):]
        values[name] = value
    with open(os.path.join(out_dir, "config.default.toml"), "wb") as f:
        tomli_w.dump(values, f)
    with open(os.path.join(out_dir, "defaults.json"), "w") as f:
        json.dump(values, f, indent=1)


if __name__ == "__main__":
    main()
