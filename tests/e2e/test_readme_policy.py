"""The README's policy, copied as a user copies it, runs as it stands through the console script
on the overfit digits target and fails it: the first policy a user sees stops a leaking model."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import yaml

from tests.conftest import REPOSITORY, DigitsTarget, RunCli


def readme_policy() -> dict[str, object]:
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    first = re.search(r"```yaml\n(.*?)```", readme, flags=re.S)
    assert first is not None, "the README shows no policy"
    policy: dict[str, object] = yaml.safe_load(first.group(1))
    return policy


def test_the_readme_policy_fails_the_overfit_digits_target(
    digits_target: DigitsTarget, run_cli: RunCli, tmp_path: Path
) -> None:
    folder = digits_target.copy_to(tmp_path / "release")
    shutil.copy(folder / "target.onnx", folder / "model.onnx")  # the file name the README uses
    policy = readme_policy()
    # The one value a user must change: the normalisation this target was trained with.
    policy["preprocessing"] = yaml.safe_load((folder / "policy.yaml").read_text())["preprocessing"]
    (folder / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))

    run = run_cli("run", folder / "policy.yaml", "--device", "cpu")

    assert run.returncode == 1, run.stderr
    assert run.stdout.startswith("FAIL "), run.stdout
    assert "Traceback" not in run.stderr
    result = json.loads((folder / "mia-report" / "result.json").read_text())
    assert result["policy"]["name"] == policy["name"] and result["exit_code"] == 1
    assert [attack["id"] for attack in result["attacks"]] == policy["attacks"]
    failed = [c for c in result["gate"]["conditions"] if not c["passed"]]
    assert failed and all(c["value"] > c["threshold"] for c in failed)
    written = {path.name for path in (folder / "mia-report").iterdir()}
    assert {"result.json", "report.html", "summary.md"} <= written
