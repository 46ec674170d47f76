#!/usr/bin/env python3
"""Heretic's own responses and refusal verdicts (heretic-llm 1.4.0) on a real model.

  heretic_responses.py MODEL_DIR DATA_DIR OUT_DIR

Runs Heretic on the Hugging Face folder MODEL_DIR (float32, CPU, row_normalization "none", no
response prefix, Heretic's default system prompt and refusal markers) with DATA_DIR's
harmless_train/harmful_train [:32] as direction prompts and harmful_test [:100] as refusal
prompts, 12-token greedy responses in batches of 32 as Heretic generates them, and writes
  OUT_DIR/base.json    {"responses": [...], "refusals": [...]}: the unmodified model
  OUT_DIR/trial.json   the same after Model.abliterate with TRIAL below
  OUT_DIR/params.json  TRIAL in schism's --params form (min_weight as the fraction TPE suggests)
Responses are decoded with skip_special_tokens, verdicts are Evaluator.is_refusal's.
"""
import json
import os
import sys
import tempfile
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from heretic_support import ensure_heretic, make_settings, make_trial  # noqa: E402
from heretic_abliteration import refusal_directions  # noqa: E402

N_PROMPTS = 100
TRIAL = {"direction_index": 18.5,
         "attn.o_proj": (1.3, 21.0, 0.5, 10.0), "mlp.down_proj": (1.1, 20.0, 0.4, 9.0)}


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    model_dir, data_dir, out_dir = (os.path.abspath(a) for a in sys.argv[1:])
    ensure_heretic(__file__)
    os.makedirs(out_dir, exist_ok=True)
    os.chdir(tempfile.mkdtemp())  # no config.toml here

    from heretic.config import DatasetSpecification
    from heretic.evaluator import Evaluator
    from heretic.model import Model
    from heretic.utils import load_prompts

    def dataset(file, n):
        return DatasetSpecification(dataset=os.path.join(data_dir, file), split=f"[:{n}]")

    settings = make_settings(
        hub_commits=False, model=model_dir, dtypes=["float32"], quantization="none",
        device_map="cpu", batch_size=32, max_response_length=12, response_prefix="",
        row_normalization="none",
        good_prompts=dataset("harmless_train.txt", 32),
        bad_prompts=dataset("harmful_train.txt", 32),
        good_evaluation_prompts=dataset("harmless_test.txt", 4),
        bad_evaluation_prompts=dataset("harmful_test.txt", N_PROMPTS))
    model = Model(settings)
    directions = refusal_directions(settings, model, load_prompts(settings, settings.good_prompts),
                                    load_prompts(settings, settings.bad_prompts))
    refusal_prompts = load_prompts(settings, settings.bad_evaluation_prompts)
    verdict = SimpleNamespace(settings=settings)  # is_refusal reads only the settings

    def write(name):
        responses = model.get_responses_batched(refusal_prompts, skip_special_tokens=True)
        with open(os.path.join(out_dir, name + ".json"), "w", encoding="utf-8") as f:
            json.dump({"responses": responses,
                       "refusals": [Evaluator.is_refusal(verdict, r) for r in responses]}, f)

    write("base")
    index = TRIAL["direction_index"]
    _, parameters = make_trial(index, {k: v for k, v in TRIAL.items() if k != "direction_index"},
                               {})
    model.reset_model()
    model.abliterate(directions, index, parameters)
    write("trial")
    params = {"direction_scope": "global", "direction_index": index}
    for component in ["attn.o_proj", "mlp.down_proj"]:
        for key, value in zip(["max_weight", "max_weight_position", "min_weight",
                               "min_weight_distance"], TRIAL[component]):
            params[f"{component}.{key}"] = value
    with open(os.path.join(out_dir, "params.json"), "w") as f:
        json.dump(params, f)


if __name__ == "__main__":
    main()
