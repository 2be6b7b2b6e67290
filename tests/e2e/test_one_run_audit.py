"""The one-run audit of a DP-SGD recipe (reference_training.dp) through the console script on
the digits target: the bound and the recipe's accounting join the gate, the model is cached by
its content key, and what the audit cannot run is refused (exit 2) before any work, by run and
alike by validate and plan.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import SMALL_CNN, SMALL_RECIPE, DigitsTarget, RunCli, without_progress


def dp_policy(folder: Path, name: str, **changes: Any) -> Path:
    recipe = {
        **SMALL_RECIPE,
        "epochs": 2,
        "train_size": 60,
        "batch_size": 16,
        "dp": {"noise_multiplier": 0.0, "max_grad_norm": 1.0, "canaries": 40},
    }
    recipe.update(changes.pop("recipe", {}))
    document = {
        "version": 1,
        "name": name,
        "model": {
            "path": "target.pt",
            "architecture": "resnet18",
            "num_classes": 10,
            "dp_claim": {"epsilon": 2.0, "delta": 1e-5},
        },
        "data": {
            "members": "members.npz",
            "non_members": "non_members.npz",
            "population": "population.npz",
        },
        "preprocessing": {"mean": [0.2, 0.2, 0.2], "std": [0.3, 0.3, 0.3]},
        "attacks": ["loss"],
        "gate": {"max_auc": 0.99, "max_epsilon_lower_bound": 2.0},
        "reference_training": recipe,
        "statistics": {"n_resamples": 200},
        "outputs": {"dir": f"out-{name}", "formats": ["json", "junit"]},
        "runtime": {"device": "cpu", "seed": 3, "cache_dir": ".mia-cache"},
        **changes,
    }
    (folder / "small_cnn.py").write_text(SMALL_CNN)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_one_run_audit_joins_the_gate_and_is_cached(
    digits_target: DigitsTarget, run_cli: RunCli, tmp_path: Path
) -> None:
    folder = digits_target.copy_to(tmp_path / "one-run")
    first = run_cli("run", dp_policy(folder, "noiseless"))
    assert first.returncode == 1, first.stdout + first.stderr
    result = json.loads((folder / "out-noiseless" / "result.json").read_text())
    one = result["one_run"]
    assert one["canaries"] == 40 and one["kind"] == "mislabelled" and one["seed"] == 3
    assert one["train_size"] == 60 + one["included"] and not one["cached"]
    assert one["accountant_epsilon"] is None and one["noise_multiplier"] == 0.0
    assert 0 <= one["correct"] <= one["guesses"] <= 40
    assert one["epsilon_lower_bound"] <= one["best_possible"]
    conditions = {c["id"]: c for c in result["gate"]["conditions"]}
    assert conditions["epsilon_lower_bound"]["per_attack"]["one_run"] == one["epsilon_lower_bound"]
    assert "one_run" in conditions["dp_claim"]["per_attack"]
    accounting = conditions["dp_claim_accounting"]
    assert not accounting["passed"] and "adds no noise" in accounting["note"]
    assert "adds no noise" in first.stdout and "does not deliver the claim" in first.stdout

    again = run_cli("run", dp_policy(folder, "noiseless"), "-q")
    assert again.returncode == 1
    cached = json.loads((folder / "out-noiseless" / "result.json").read_text())["one_run"]
    assert cached["cached"] and cached["epsilon_lower_bound"] == one["epsilon_lower_bound"]

    other = run_cli("run", dp_policy(folder, "noiseless"), "--seed", "4", "-q")
    assert other.returncode == 1
    reseeded = json.loads((folder / "out-noiseless" / "result.json").read_text())["one_run"]
    assert not reseeded["cached"] and reseeded["seed"] == 4


def test_an_honest_noisy_recipe_passes_its_accountant(
    digits_target: DigitsTarget, run_cli: RunCli, tmp_path: Path
) -> None:
    folder = digits_target.copy_to(tmp_path / "noisy")
    recipe = {"dp": {"noise_multiplier": 5.0, "max_grad_norm": 1.0, "canaries": 40}}
    done = run_cli("run", dp_policy(folder, "noisy", recipe=recipe), "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((folder / "out-noisy" / "result.json").read_text())
    assert 0 < result["one_run"]["accountant_epsilon"] <= 2.0
    assert result["dp_claim"]["checked"] and result["dp_claim"]["passed"]


def refusal(run_cli: RunCli, policy: Path, *env_path: Path) -> str:
    """The error line of `run` on a policy it must refuse (exit 2) before any work; validate
    and plan must refuse it with the same line, so a policy they pass is one run accepts."""
    from tests.conftest import CONSOLE_SCRIPT, environment_with_path

    errors = []
    for command in ("run", "validate", "plan"):
        if env_path:
            import subprocess

            done = subprocess.run(
                [str(CONSOLE_SCRIPT), command, str(policy)],
                capture_output=True,
                text=True,
                env=environment_with_path(*env_path),
                timeout=600,
                check=False,
            )
        else:
            done = run_cli(command, policy)
        assert done.returncode == 2, f"{command}: {done.stdout + done.stderr}"
        error = without_progress(done.stderr)[-1]  # after the notes of loading the target
        assert error.startswith("error: "), f"{command}: {done.stderr}"
        assert "Traceback" not in done.stderr
        errors.append(error)
    assert not (policy.parent / f"out-{policy.stem}").exists()
    assert errors[1] == errors[0] and errors[2] == errors[0], errors
    return errors[0]


def test_what_the_one_run_audit_cannot_run_is_refused(
    digits_target: DigitsTarget, run_cli: RunCli, tmp_path: Path
) -> None:
    folder = digits_target.copy_to(tmp_path / "refused")
    error = refusal(run_cli, dp_policy(folder, "batchnorm", recipe={"architecture": "resnet18"}))
    assert error.startswith("error: reference_training.architecture: resnet18 cannot be trained")
    assert "GroupNorm" in error

    recipe = {"dp": {"noise_multiplier": 1.0, "max_grad_norm": 1.0, "canaries": 5000}}
    error = refusal(run_cli, dp_policy(folder, "many", recipe=recipe))
    assert "reference_training.dp.canaries: 5000 canaries" in error

    error = refusal(run_cli, dp_policy(folder, "lira", attacks=["loss", "lira"]))
    assert "reference_training.dp: reference models are not trained with DP-SGD" in error

    no_population = dp_policy(folder, "nopop")
    document = yaml.safe_load(no_population.read_text())
    del document["data"]["population"]
    no_population.write_text(yaml.safe_dump(document))
    assert "set data.population" in refusal(run_cli, no_population)

    # Without opacus (a stand-in package that fails to import, first on the path):
    shadow = tmp_path / "no-opacus" / "opacus"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('opacus is not installed')\n")
    error = refusal(run_cli, dp_policy(folder, "noopacus"), shadow.parent)
    assert error.endswith("run pip install 'mia-audit[dp]'")
