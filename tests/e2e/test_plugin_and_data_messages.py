"""Messages that name the culprit: a plugin attack that raises (exit 3 naming the attack, its
entry point and distribution), an attack whose scores are all equal (a note: it cannot detect
anything), float images on the 0..255 scale (exit 2 naming the file, not a "weak target")."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import (
    CONSOLE_SCRIPT,
    DigitsTarget,
    RunCli,
    environment_with_path,
    without_progress,
)

PLUGIN = '''
"""Two attacks a plugin ships: one that raises, one that scores every sample alike."""
from typing import Literal

import numpy as np

from mia_audit.attacks.base import Attack, AttackContext, AttackOutput
from mia_audit.attacks.config import AttackConfig
from mia_audit.attacks.registry import register


class BrokenConfig(AttackConfig):
    name: Literal["broken"]


@register
class BrokenAttack(Attack[BrokenConfig]):
    name = "broken"
    config_type = BrokenConfig
    summary = "Raises."

    def score(self, context: AttackContext) -> AttackOutput:
        raise ValueError("the plugin's own bug")


class ConstantConfig(AttackConfig):
    name: Literal["constant"]


@register
class ConstantAttack(Attack[ConstantConfig]):
    name = "constant"
    config_type = ConstantConfig
    summary = "The same score for every sample."

    def score(self, context: AttackContext) -> AttackOutput:
        return AttackOutput(np.zeros(len(context.labels)), self.parameters())
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The throwaway distribution mia-audit-oddities, laid out as pip installs one."""
    site = tmp_path_factory.mktemp("site")
    (site / "oddities.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "mia_audit_oddities-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mia-audit-oddities\nVersion: 0.3\n"
    )
    (info / "entry_points.txt").write_text("[mia_audit.attacks]\noddities = oddities\n")
    return site


@pytest.fixture(scope="module")
def folder(digits_target: DigitsTarget, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return digits_target.copy_to(tmp_path_factory.mktemp("messages") / "t")


def write_policy(folder: Path, name: str, attacks: list[str], **data: str) -> Path:
    document = yaml.safe_load((folder / "policy.yaml").read_text())
    document["data"] |= data
    document |= {"attacks": attacks, "outputs": {"dir": f"out-{name}", "formats": ["json"]}}
    document["runtime"]["device"] = "cpu"
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def run_with(site: Path, policy: Path) -> subprocess.CompletedProcess[str]:
    env = environment_with_path(site, COLUMNS="200")
    return subprocess.run(
        [str(CONSOLE_SCRIPT), "run", str(policy)],
        capture_output=True, text=True, env=env, timeout=900, check=False,
    )  # fmt: skip


def test_a_plugin_attack_that_raises_names_the_attack_and_the_plugin(
    site: Path, folder: Path
) -> None:
    completed = run_with(site, write_policy(folder, "broken", ["loss", "broken"]))

    assert completed.returncode == 3, completed.stderr
    errors = [line for line in without_progress(completed.stderr) if line.startswith("error: ")]
    assert errors == [
        "error: attack 'broken': the plugin attack 'broken' (entry point 'oddities' (oddities) "
        "of distribution mia-audit-oddities 0.3) failed: ValueError: the plugin's own bug; fix or "
        "uninstall that package, or remove the attack from the policy"
    ]
    assert "internal error" not in completed.stderr and "Traceback" not in completed.stderr
    assert not (folder / "out-broken" / "result.json").exists()


def test_constant_scores_are_noted(site: Path, folder: Path) -> None:
    completed = run_with(site, write_policy(folder, "constant", ["loss", "constant"]))

    assert completed.returncode == 1, completed.stderr  # loss still finds the leak
    result = json.loads((folder / "out-constant" / "result.json").read_text())
    expected = (
        "attack 'constant' gave every sample the same score (0): it cannot tell members from "
        "non-members, so its AUC of 0.5 says nothing about the model"
    )
    assert any(note.startswith(expected) for note in result["notes"]), result["notes"]
    assert f"note: {expected}" in completed.stderr
    assert not any("'loss' gave every sample" in note for note in result["notes"])


def test_float_images_on_the_0_255_scale_are_named(folder: Path, run_cli: RunCli) -> None:
    with np.load(folder / "members.npz") as members:
        arrays = dict(members)
    arrays["x"] = arrays["x"].transpose(0, 3, 1, 2).astype(np.float32)  # (N, C, H, W), 0..255
    np.savez(folder / "members_float255.npz", **arrays)
    policy = write_policy(folder, "float255", ["loss"], members="members_float255.npz")

    for command in ("validate", "run"):
        completed = run_cli(command, policy)
        assert completed.returncode == 2, completed.stderr
        errors = [line for line in without_progress(completed.stderr) if line.startswith("error: ")]
        assert len(errors) == 1, completed.stderr
        assert errors[0].startswith(
            f"error: data.members: {folder / 'members_float255.npz'}: float images range from 0 "
            "to 255, outside the 0..1 scale of preprocessing's mean and std"
        ), errors[0]
        assert "divide them by 255 or save them as uint8" in errors[0]
        assert "weak" not in errors[0] and "Traceback" not in completed.stderr
