"""Policy parsing: the contract keys, committed schema, examples and the fast --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mia_audit.errors import PolicyError
from mia_audit.policy.loading import load_policy, parse_policy, policy_json_schema
from tests.conftest import USER_DOCS

ROOT = Path(__file__).resolve().parents[1]
POLICIES = sorted((ROOT / "policies").glob("*.yaml"))

MINIMAL = {
    "version": 1,
    "name": "p",
    "model": {"path": "m.onnx"},
    "data": {"members": "a.npz", "non_members": "b.npz"},
    "preprocessing": "none",
    "attacks": ["loss"],
    "gate": {"max_auc": 0.6},
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
        model={
            "path": "m.pt",
            "architecture": "resnet18",
            "num_classes": 10,
            "cifar_stem": False,
            "allow_pickle": False,
        },
        data={
            "members": "a.npz",
            "non_members": "b.npz",
            "population": "c.npz",
            "allow_pickle": False,
            "max_per_side": 100,
        },
        preprocessing={"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        gate={"max_auc": 0.6, "max_tpr_at_fpr": [{"fpr": 0.05, "max": 0.1}]},
        outputs={"dir": "mia-report", "formats": ["json", "markdown", "junit"]},
        runtime={"device": "auto", "seed": 0, "batch_size": 512, "cache_dir": ".mia-cache"},
        attacks=[
            "loss",
            "confidence",
            {"name": "rmia", "reference_models": 4},
            {"name": "lira", "reference_models": 4, "mode": "offline"},
        ],
        reference_training={
            "architecture": "resnet18",
            "cifar_stem": False,
            "epochs": 20,
            "batch_size": 256,
            "lr": 0.1,
            "weight_decay": 0.0005,
            "augment": ["flip", "crop"],
            "train_size": 2500,
        },
    )
    assert policy.gate.max_tpr_at_fpr[0].fpr == 0.05  # type: ignore[attr-defined]
    assert policy.reference_training.train_size == 2500  # type: ignore[attr-defined]


def test_reference_recipe_defaults_come_from_the_model_and_the_members() -> None:
    policy = parse(
        model={"path": "m.pt", "architecture": "resnet34", "cifar_stem": True},
        attacks=[{"name": "shadow", "shadow_models": 2}],
        reference_training={"epochs": 3, "optimizer": "adamw", "label_smoothing": 0.1},
    )
    recipe = policy.reference_training.resolve(policy.model, 123)  # type: ignore[attr-defined]
    assert (recipe.architecture, recipe.cifar_stem, recipe.train_size) == ("resnet34", True, 123)
    assert (recipe.epochs, recipe.optimizer, recipe.label_smoothing) == (3, "adamw", 0.1)


def test_onnx_target_needs_a_reference_architecture() -> None:
    with pytest.raises(PolicyError, match=r"reference_training\.architecture: attack 'lira'"):
        parse(attacks=["loss", "lira"])
    policy = parse(attacks=["lira"], reference_training={"architecture": "resnet18"})
    assert policy.reference_attacks[0].name == "lira"  # type: ignore[attr-defined]
    assert parse(attacks=["loss"]).reference_attacks == ()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"attacks": [{"name": "lira", "mode": "online", "reference_models": 3}]}, "even number"),
        ({"attacks": [{"name": "rmia", "offline_a": 2}]}, "'auto' or a number in [0, 1], got 2"),
        ({"attacks": [{"name": "shadow", "mode": "online"}]}, "unknown key 'mode'"),
        ({"reference_training": {"epoch": 3}}, "unknown key 'epoch' (did you mean 'epochs'?)"),
        ({"reference_training": {"augment": ["rotate"]}}, "reference_training.augment[0]"),
        ({"outputs": {"formats": ["pdf"]}}, "unknown format 'pdf'; available: json, html"),
        (
            {"gate": {"max_acu": 0.5}},
            "gate.max_acu: unknown key 'max_acu' (did you mean 'max_auc'?)",
        ),
        ({"attacks": ["los"]}, "unknown attack 'los' (did you mean 'loss'?)"),
        ({"gate": {"max_auc": 1.5}}, "gate.max_auc.max"),
        ({"version": 2}, "version"),
        ({"preprocessing": {"mean": [float("nan")], "std": [1.0]}}, "a finite number"),
        ({"reference_training": {"lr": float("inf")}}, "reference_training.lr"),
        ({"gate": {"max_epsilon_lower_bound": float("inf")}}, "a finite number"),
        ({"gate": {"x\ny": 1}}, "gate.'x\\ny': unknown key"),
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


def test_default_folders_resolve_against_the_policy_folder_too() -> None:
    """Not against the working directory: a policy in a subfolder caches beside itself."""
    policy = parse()
    assert policy.runtime.cache_dir == Path("/base/.mia-cache")  # type: ignore[attr-defined]
    assert policy.outputs.dir == Path("/base/mia-report")  # type: ignore[attr-defined]


def test_docs_tables_name_every_registered_attack_format_and_executor() -> None:
    """A new attack, format or executor is one module and one registration line; its row in
    the docs' table (docs/attacks.md, reports.md, extending.md) is the one other thing to add,
    and this test asks for it."""
    from mia_audit.attacks.registry import attack_names
    from mia_audit.references.executors import executor_kinds
    from mia_audit.reports import format_names

    lines = [line for path in USER_DOCS for line in path.read_text("utf-8").splitlines()]
    rows = {line.split("|")[1].strip() for line in lines if line.startswith("| `")}
    for name in [*attack_names(), *format_names(), *executor_kinds()]:
        assert any(row.startswith(f"`{name}`") for row in rows), f"the docs have no row for {name}"
