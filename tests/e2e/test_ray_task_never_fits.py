"""A Ray task that no node of `address: local` can ever fit is exit 2 up front, naming the key,
instead of a run that waits forever (validate says so without starting Ray)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from tests.conftest import SMALL_CNN, SMALL_RECIPE, DigitsTarget, RunCli, without_progress


def test_cpus_per_task_beyond_this_machine_is_refused(
    digits_target: DigitsTarget, tmp_path: Path, run_cli: RunCli
) -> None:
    folder = digits_target.copy_to(tmp_path / "t")
    (folder / "small_cnn.py").write_text(SMALL_CNN)
    too_many = 4 * (os.cpu_count() or 1)
    document = yaml.safe_load((folder / "policy.yaml").read_text())
    document |= {
        "attacks": [{"name": "lira", "reference_models": 2, "mode": "offline"}],
        "reference_training": SMALL_RECIPE,
        "gate": {"max_auc": 0.99},
        "outputs": {"dir": "report", "formats": ["json"]},
    }
    document["runtime"] = {
        "device": "cpu",
        "executor": {"kind": "ray", "address": "local", "cpus_per_task": too_many},
    }
    policy = folder / "policy.yaml"
    policy.write_text(yaml.safe_dump(document, sort_keys=False))
    expected = f"error: runtime.executor.cpus_per_task: is {too_many} but the Ray instance"

    validated = run_cli("validate", policy)
    ran = run_cli("run", policy)

    for completed in (validated, ran):
        assert completed.returncode == 2, completed.stderr
        errors = [line for line in without_progress(completed.stderr) if line.startswith("error: ")]
        assert len(errors) == 1 and errors[0].startswith(expected), completed.stderr
        assert "so no task could ever start; set cpus_per_task to at most" in errors[0]
        assert "Traceback" not in completed.stderr
    assert not (folder / "report" / "result.json").exists()
