"""Policy parsing: the contract keys, committed schema, examples and the fast --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mia_audit.errors import PolicyError
from mia_audit.policy import load_policy, parse_policy, policy_json_schema

ROOT = Path(__file__).resolve().parents[1]
POLICIES = sorted((ROOT / "policies").glob("*.yaml"))

MINIMAL = {
    "version": 1,
    "name": "p",
    "model": {"path": "m.onnx"},
    "data": {"members": "a.npz", "non_members": "b.npz"},
    "attacks": ["loss"],
}


def parse(**changes: object) -> object:
    return parse_policy({**MINIMAL, **changes}, base_dir=Path("/base"))


def test_committed_schema_is_up_to_date() -> None:
    committed = json.loads((ROOT / "policies" / "policy.schema.json").read_text())
    assert committed == policy_json_schema(), "run `make schema` and commit the result"


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_example_policies_validate(path: Path) -> None:
    loaded = load_policy(path)
    assert loaded.policy.attacks


def test_relative_paths_resolve_against_the_policy_folder() -> None:
    policy = parse()
    assert policy.model.path == Path("/base/m.onnx")  # type: ignore[attr-defined]


def test_design_contract_keys_parse() -> None:
    policy = parse(
        model={"path": "m.pt", "architecture": "resnet18", "num_classes": 10,
               "cifar_stem": False, "allow_pickle": False},
        data={"members": "a.npz", "non_members": "b.npz", "population": "c.npz",
              "allow_pickle": False, "max_per_side": 100},
        preprocessing={"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        gate={"max_auc": 0.6, "max_tpr_at_fpr": [{"fpr": 0.05, "max": 0.1}]},
        outputs={"dir": "mia-report", "formats": ["json", "markdown", "junit"]},
        runtime={"device": "auto", "seed": 0, "batch_size": 512, "cache_dir": ".mia-cache"},
    )
    assert policy.gate.max_tpr_at_fpr[0].fpr == 0.05  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"attacks": ["lira"]}, "attacks[0]: attack 'lira' is not available yet"),
        ({"attacks": [{"name": "rmia", "reference_models": 4}]}, "'rmia' is not available yet"),
        ({"reference_training": {"epochs": 3}}, "'reference_training' is not available yet"),
        ({"outputs": {"formats": ["html"]}}, "format 'html' is not available yet"),
        ({"gate": {"max_acu": 0.5}}, "gate.max_acu: unknown key 'max_acu' (did you mean 'max_auc'?)"),
        ({"attacks": ["los"]}, "unknown attack 'los' (did you mean 'loss'?)"),
        ({"gate": {"max_auc": 1.5}}, "gate.max_auc.max"),
        ({"version": 2}, "version"),
    ],
)
def test_invalid_policies_name_the_field(changes: dict[str, object], expected: str) -> None:
    with pytest.raises(PolicyError) as error:
        parse(**changes)
    message = str(error.value)
    assert expected in message
    assert "\n" not in message


def test_yaml_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(MINIMAL) + "gate: {max_auc: [\n")
    with pytest.raises(PolicyError, match="line"):
        load_policy(path)


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from mia_audit.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'sklearn') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "Usage" in completed.stdout
    assert completed.stdout.strip().splitlines()[-1] == "HEAVY="
