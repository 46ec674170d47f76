#!/usr/bin/env python3
"""Heretic reproduce.json oracle: files written by Heretic's own code (heretic-llm 1.4.0).

  heretic_reproduce.py OUT_DIR

writes, through heretic.utils.generate_reproduce_json (what Heretic's upload writes as
reproduce/reproduce.json), with Settings and trial user attributes built as heretic/main.py
builds them:

  OUT_DIR/v2_global.json     format "2": a global direction, non-default settings, system info
  OUT_DIR/v2_per_layer.json  format "2": per-layer directions, default settings, no system info
  OUT_DIR/v1.json            format "1", as Heretic 1.3.0 wrote it (see below)

and for each file OUT_DIR/<name>.weights.json, {component: [weight of layer 0, ...]}: the
ablation weight Heretic's Model.abliterate applies to each of NUM_LAYERS layers when it restores
the file's parameters the way main.py's reproduction mode does.

Format "1" is Heretic 1.3.0's. Its generate_reproduce_json is 1.4.0's with "version": "1" (the
only difference between the two functions), and 1.3.0's Settings dump is 1.4.0's without
`export_strategy` (added in 1.4.0), with a default refusal marker list lacking "disclaimer". 1.3.0
is not installed, so v1.json is 1.4.0's output with exactly those differences applied (and 1.3.0
as the Heretic version; the other package versions stay this environment's). Checked once against
heretic-llm 1.3.0's wheel: the same inputs give the same file outside `environment`.

Heretic must be importable (heretic_support.ensure_heretic: else the script exits with 77 and the
test skips).
"""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from heretic_support import ensure_heretic, make_settings, make_trial  # noqa: E402

NUM_LAYERS = 28


def layer_weights(reproduction):
    """Heretic's Model.abliterate on stand-in modules, fed as main.py's reproduction mode feeds it:
    every refusal direction is e_0 and every weight matrix the identity, so lora_B = -weight * e_0
    and layer i's weight is -lora_B[0] (float64 throughout, so exact)."""
    from types import SimpleNamespace

    import torch
    from heretic.config import RowNormalization
    from heretic.model import AbliterationParameters, Model

    parameters = reproduction["parameters"]
    abliteration = {k: AbliterationParameters(**v)
                    for k, v in parameters["abliteration_parameters"].items()}
    d = 4
    modules = {}
    for layer in range(NUM_LAYERS):
        for component in abliteration:
            modules[(layer, component)] = SimpleNamespace(
                weight=torch.zeros(1, dtype=torch.float64),
                # W; its .to(float32) stays float64, so that lora_B keeps the weight exactly.
                base_layer=SimpleNamespace(weight=SimpleNamespace(
                    to=lambda dtype: torch.eye(d, dtype=torch.float64))),
                lora_A={"default": SimpleNamespace(weight=torch.zeros(1, d, dtype=torch.float64))},
                lora_B={"default": SimpleNamespace(weight=torch.zeros(d, 1, dtype=torch.float64))})
    model = SimpleNamespace(
        settings=SimpleNamespace(row_normalization=RowNormalization.NONE),
        get_layers=lambda: list(range(NUM_LAYERS)),
        get_layer_modules=lambda layer: {c: [modules[(layer, c)]] for c in abliteration})
    directions = torch.zeros(NUM_LAYERS + 1, d, dtype=torch.float64)
    directions[:, 0] = 1
    Model.abliterate(model, directions, parameters["direction_index"], abliteration)
    return {c: [-modules[(layer, c)].lora_B["default"].weight[0, 0].item()
                for layer in range(NUM_LAYERS)]
            for c in abliteration}


def write(out_dir, name, text):
    with open(os.path.join(out_dir, name + ".json"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(out_dir, name + ".weights.json"), "w", encoding="utf-8") as f:
        json.dump(layer_weights(json.loads(text)), f)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out_dir = os.path.abspath(sys.argv[1])
    ensure_heretic(__file__)
    os.makedirs(out_dir, exist_ok=True)
    os.chdir(tempfile.mkdtemp())  # no config.toml here

    from heretic.config import DatasetSpecification
    from heretic.utils import generate_reproduce_json

    timestamp = "2026-06-12T08:30:00"
    hashes = {"model-00001-of-00002.safetensors": "5d41402abc4b2a76b9719d911017c592" * 2,
              "model-00002-of-00002.safetensors": "7D793037A0760186574B0282F2F435E7" * 2}

    settings = make_settings(
        model="Qwen/Qwen3-4B-Instruct-2507",
        dtypes=["bfloat16", "float32"],
        quantization="bnb_4bit",
        batch_size=64,
        max_response_length=120,
        response_prefix="<think>\n\n</think>\n\n",
        kl_divergence_scale=1.5,
        kl_divergence_target=0.02,
        orthogonalize_direction=False,
        row_normalization="pre",
        winsorization_quantile=0.95,
        n_trials=150,
        n_startup_trials=40,
        seed=1234,
        export_strategy="merge",
        max_shard_size="2GB",
        refusal_markers=["sorry", "i cannot", "as an ai"],
        system_prompt="You are a terse assistant.",
        good_prompts=DatasetSpecification(dataset="mlabonne/harmless_alpaca", split="train[:300]",
                                          column="text", prefix="Q: ", suffix=" A:",
                                          system_prompt="Answer plainly."),
    )
    trial, _ = make_trial(
        14.37,
        {"attn.o_proj": (1.2, 20.5, 0.35, 9.2), "mlp.down_proj": (0.93, 17.0, 0.8, 6.4)},
        {"kl_divergence": 0.1234, "refusals": 7, "base_refusals": 93, "n_bad_prompts": 100})
    write(out_dir, "v2_global", generate_reproduce_json(
        settings, trial, timestamp=timestamp, uploaded_model_hashes=hashes,
        include_system_information=True))

    # A default run, after main.py fixed the batch size and found no common response prefix.
    settings = make_settings(model="google/gemma-3-270m-it", batch_size=128, response_prefix="",
                             seed=7)
    trial, _ = make_trial(
        None,
        {"attn.o_proj": (1.4379, 25.1, 0.0918, 12.07),
         "mlp.down_proj": (1.0713, 22.6, 0.6012, 3.3)},
        {"kl_divergence": 0.0456, "refusals": 3, "base_refusals": 97, "n_bad_prompts": 100})
    write(out_dir, "v2_per_layer", generate_reproduce_json(
        settings, trial, timestamp=timestamp,
        uploaded_model_hashes={"model.safetensors": "ab" * 32},
        include_system_information=False))

    settings = make_settings(model="meta-llama/Llama-3.2-3B-Instruct", batch_size=32,
                             response_prefix="", seed=4242)
    settings.refusal_markers = [m for m in settings.refusal_markers if m != "disclaimer"]
    trial, _ = make_trial(
        19.81,
        {"attn.o_proj": (0.8841, 18.3, 0.5, 7.7), "mlp.down_proj": (1.2277, 21.0, 0.25, 11.9)},
        {"kl_divergence": 0.31, "refusals": 12, "base_refusals": 88, "n_bad_prompts": 100})
    data = json.loads(generate_reproduce_json(
        settings, trial, timestamp=timestamp,
        uploaded_model_hashes={"model.safetensors": "cd" * 32},
        include_system_information=False))
    data["version"] = "1"
    del data["settings"]["export_strategy"]
    data["environment"]["heretic"]["version"] = "1.3.0"
    if "heretic-llm" in data["environment"]["requirements"]:
        data["environment"]["requirements"]["heretic-llm"] = "1.3.0"
    write(out_dir, "v1", json.dumps(data, indent=4))


if __name__ == "__main__":
    main()
