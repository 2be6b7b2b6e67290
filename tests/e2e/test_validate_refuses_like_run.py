"""`mia-audit validate` refuses every policy `run` refuses before its first attack, with the
same one-line message: the weak-target check (wrong preprocessing), an unreachable Ray address,
an outputs.dir that cannot be written, runtime.max_minutes far below the estimate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import SMALL_CNN, SMALL_RECIPE, DigitsTarget, RunCli, without_progress

LIRA = {"name": "lira", "reference_models": 2, "mode": "offline"}


@pytest.fixture(scope="module")
def folder(digits_target: DigitsTarget, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = digits_target.copy_to(tmp_path_factory.mktemp("validate-like-run") / "t")
    (folder / "small_cnn.py").write_text(SMALL_CNN)
    return folder


def write_policy(folder: Path, name: str, **changes: Any) -> Path:
    document = yaml.safe_load((folder / "policy.yaml").read_text())
    document |= {"attacks": ["loss"], "gate": {"max_auc": 0.99}}
    document["outputs"] = {"dir": f"report-{name}", "formats": ["json"]}
    document["runtime"] = {"device": "cpu", "seed": 0, "cache_dir": ".mia-cache"}
    for key, value in changes.items():
        document[key] = {**document[key], **value} if key == "runtime" else value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


CASES: dict[str, tuple[dict[str, Any], str]] = {
    "weak-target": (
        {"preprocessing": {"mean": [0.2] * 3, "std": [30.0] * 3}},
        "error: preprocessing: the target classifies",
    ),
    "unreachable-ray": (
        {
            "attacks": [LIRA],
            "reference_training": SMALL_RECIPE,
            "runtime": {
                "executor": {"kind": "ray", "address": "127.0.0.1:9", "connect_timeout": 3}
            },
        },
        "error: runtime.executor.address: cannot reach the Ray cluster at 127.0.0.1:9",
    ),
    "unwritable-outputs": (
        {"outputs": {"dir": "policy.yaml/report", "formats": ["json"]}},
        "error: outputs.dir: ",
    ),
    "max-minutes": (
        {"attacks": [LIRA], "reference_training": SMALL_RECIPE, "runtime": {"max_minutes": 0.001}},
        "error: runtime.max_minutes: the run is estimated at ",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_validate_refuses_what_run_refuses(folder: Path, run_cli: RunCli, case: str) -> None:
    changes, message = CASES[case]
    policy = write_policy(folder, case, **changes)

    validated = run_cli("validate", policy)
    ran = run_cli("run", policy)

    assert validated.returncode == 2, validated.stdout + validated.stderr
    assert ran.returncode == 2, ran.stderr
    validate_errors = [
        line for line in without_progress(validated.stderr) if line.startswith("error: ")
    ]
    run_errors = [line for line in without_progress(ran.stderr) if line.startswith("error: ")]
    assert len(validate_errors) == 1 and validate_errors[0].startswith(message), validated.stderr
    assert len(run_errors) == 1 and run_errors[0].startswith(message), ran.stderr
    if case != "max-minutes":  # the estimate is measured anew by each command
        assert validate_errors == run_errors
    assert "Traceback" not in validated.stderr
    assert validated.stdout == ""
    assert not (folder / f"report-{case}").exists()  # validate leaves no folder behind


def test_validate_still_passes_the_honest_policy(folder: Path, run_cli: RunCli) -> None:
    completed = run_cli("validate", write_policy(folder, "honest"))
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("policy ok: ")
    assert not (folder / "report-honest").exists()
