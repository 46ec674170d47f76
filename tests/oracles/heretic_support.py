"""Shared by the oracles that run Heretic's own code (heretic-llm 1.4.0).

ensure_heretic(script) re-executes `script` with an interpreter that can import heretic: this
one, else the first of $SCHISM_HERETIC_PYTHON, <source>/.venv-heretic/bin/python (scripts/setup
installs heretic-llm there), <source>/build-vs-heretic/venv/bin/python and <source>/.venv/bin/python;
if none can, it exits with 77 (the test skips).
"""
import hashlib
import os
import subprocess
import sys

SKIP = 77
SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def heretic_importable(python):
    # Finding the package is enough to pick the interpreter (importing heretic takes ~10 s); one
    # that finds it but cannot import it fails in the re-executed oracle, with its error.
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('heretic') is None)"
    try:
        run = subprocess.run([python, "-c", probe], capture_output=True, timeout=300)
        return run.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def ensure_heretic(script):
    try:
        import heretic.utils  # noqa: F401
        return
    except ImportError:
        pass
    candidates = [os.environ.get("SCHISM_HERETIC_PYTHON", ""),
                  os.path.join(SOURCE_DIR, ".venv-heretic", "bin", "python"),
                  os.path.join(SOURCE_DIR, "build-vs-heretic", "venv", "bin", "python"),
                  os.path.join(SOURCE_DIR, ".venv", "bin", "python")]
    if not os.environ.get("SCHISM_HERETIC_ORACLE_REEXEC"):
        for python in candidates:
            if python and os.path.exists(python) and heretic_importable(python):
                os.environ["SCHISM_HERETIC_ORACLE_REEXEC"] = "1"
                os.execv(python, [python, os.path.abspath(script)] + sys.argv[1:])
    print("heretic (heretic-llm 1.4.0) is not importable from " + sys.executable +
          " nor from $SCHISM_HERETIC_PYTHON, .venv-heretic, build-vs-heretic/venv or .venv")
    sys.exit(SKIP)


def commit_sha(name):
    # create_reproduce_folder asks the Hub for these; fixed stand-ins keep the oracle offline.
    return hashlib.sha1(name.encode()).hexdigest()


def make_settings(hub_commits=True, **overrides):
    """Heretic's Settings as main.py builds them; with `hub_commits`, the model and dataset commits
    create_reproduce_folder would record, as stand-ins."""
    from heretic.config import Settings
    # Settings() also reads the command line, HERETIC_* variables and ./config.toml: none of them.
    sys.argv = ["heretic"]
    for name in [n for n in os.environ if n.upper().startswith("HERETIC_")]:
        del os.environ[name]
    settings = Settings(**overrides)
    if hub_commits:
        settings.model_commit = commit_sha(settings.model)
        for spec in [settings.good_prompts, settings.bad_prompts,
                     settings.good_evaluation_prompts, settings.bad_evaluation_prompts]:
            spec.commit = commit_sha(spec.dataset)
    return settings


def make_trial(direction_index, sampled, metrics):
    """As main.py's objective: `sampled` holds the values TPE suggests per component, min_weight
    as the fraction of max_weight that main.py multiplies out. Returns the trial and the
    AbliterationParameters it records."""
    from dataclasses import asdict

    from heretic.model import AbliterationParameters
    from optuna.trial import create_trial

    parameters = {}
    for component, values in sampled.items():
        max_weight, max_weight_position, min_weight, min_weight_distance = values
        parameters[component] = AbliterationParameters(
            max_weight=max_weight,
            max_weight_position=max_weight_position,
            min_weight=(min_weight * max_weight),
            min_weight_distance=min_weight_distance,
        )
    user_attrs = {"direction_index": direction_index,
                  "parameters": {k: asdict(v) for k, v in parameters.items()}}
    user_attrs.update(metrics)
    return create_trial(values=[], user_attrs=user_attrs), parameters
