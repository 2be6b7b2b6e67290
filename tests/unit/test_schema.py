"""The committed JSON Schema accepts exactly what the loader accepts (issue 12, 2).

Editors validate policies with `policies/policy.schema.json` (the YAML language server reads
the `# yaml-language-server: $schema=` line): every documented form must pass there, and every
policy the loader refuses for its own content must fail there too. Documents are read as an
editor reads YAML: a date such as `expires: 2026-06-30` is a string.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mia_audit.errors import PolicyError
from mia_audit.policy.loading import parse_policy
from tests.conftest import USER_DOCS
from tests.policy_mistakes import POLICY_MISTAKES

ROOT = Path(__file__).resolve().parents[2]
POLICIES = sorted((ROOT / "policies").glob("*.yaml"))
SCHEMA = json.loads((ROOT / "policies" / "policy.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


class EditorLoader(yaml.SafeLoader):
    """YAML as an editor's language server sees it: timestamps stay strings."""


def timestamp_as_string(loader: EditorLoader, node: yaml.ScalarNode) -> str:
    """An implicit timestamp is always a plain scalar; an editor keeps its text."""
    return loader.construct_scalar(node)


EditorLoader.add_constructor("tag:yaml.org,2002:timestamp", timestamp_as_string)


def load(text: str) -> Any:
    return yaml.load(text, Loader=EditorLoader)


def schema_problems(document: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message[:160]}" for e in VALIDATOR.iter_errors(document)]


def loader_accepts(document: Any) -> bool:
    try:
        parse_policy(copy.deepcopy(document), base_dir=Path("/base"))
    except PolicyError:
        return False
    return True


MINIMAL: dict[str, Any] = {
    "version": 1,
    "name": "p",
    "model": {"path": "m.pt", "architecture": "resnet18"},
    "data": {"members": "a.npz", "non_members": "b.npz"},
    "preprocessing": "none",
    "attacks": ["loss"],
    "gate": {"max_auc": 0.6},
}


def yaml_blocks(path: Path) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def documented_policy_blocks() -> list[tuple[str, dict[str, Any]]]:
    """Every YAML block of the README and the docs/ pages that is (part of) a policy, completed
    to a whole policy with MINIMAL's other sections (the workflow files are not policies, nor
    is floor.md's floor file: tests/unit/test_floor_policy.py loads that one as a floor)."""
    policies = []
    for path in (path for path in USER_DOCS if path.name != "floor.md"):
        for index, block in enumerate(yaml_blocks(path)):
            document = load(block)
            if not isinstance(document, dict) or {"jobs", "runs", "on"} & set(document):
                continue
            policies.append((f"{path.name}-block-{index}", {**MINIMAL, **document}))
    return policies


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_example_policies_validate_against_the_committed_schema(path: Path) -> None:
    document = load(path.read_text(encoding="utf-8"))
    assert schema_problems(document) == []
    assert loader_accepts(document)


@pytest.mark.parametrize(
    ("name", "document"), documented_policy_blocks(), ids=lambda v: str(v)[:28]
)
def test_documented_policy_blocks_validate(name: str, document: dict[str, Any]) -> None:
    assert schema_problems(document) == [], name
    assert loader_accepts(document), name


def test_docs_have_policy_blocks_and_document_the_editor_line() -> None:
    assert len(documented_policy_blocks()) >= 3
    assert any("# yaml-language-server: $schema=" in path.read_text() for path in USER_DOCS)


def test_the_readme_policy_is_complete_by_itself() -> None:
    """The README's policy is what a user copies first: whole, without MINIMAL's sections."""
    first = load(yaml_blocks(ROOT / "README.md")[0])
    assert first["version"] == 1 and {"model", "data", "preprocessing", "gate"} <= set(first)
    assert schema_problems(first) == []
    assert loader_accepts(first)


@pytest.mark.parametrize("mistake", sorted(POLICY_MISTAKES))
@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_bad_input_policies_fail_the_schema(mistake: str, path: Path) -> None:
    document = load(path.read_text(encoding="utf-8"))
    document.setdefault("runtime", {"seed": 0})
    POLICY_MISTAKES[mistake](document)
    assert schema_problems(document), f"the schema accepts {mistake}"
    assert not loader_accepts(document)


#: (description, changes to MINIMAL): documented shorthands and long forms, and mistakes. The
#: schema and the loader must agree on each.
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("attack names", {"attacks": ["loss", "confidence", "lira", "rmia", "shadow"]}),
    ("attack mapping", {"attacks": [{"name": "logit_margin", "queries": 2, "form": "hinge"}]}),
    ("queries 18", {"attacks": [{"name": "loss", "queries": 18}]}),
    ("queries mapping", {"attacks": [{"name": "loss", "queries": {"mirror": True, "shift": 2}}]}),
    ("queries 3", {"attacks": [{"name": "loss", "queries": 3}]}),
    ("unknown attack", {"attacks": ["los"]}),
    ("no attacks", {"attacks": []}),
    ("lira online 4", {"attacks": [{"name": "lira", "reference_models": 4}]}),
    ("lira online 3", {"attacks": [{"name": "lira", "reference_models": 3}]}),
    ("lira offline 3", {"attacks": [{"name": "lira", "reference_models": 3, "mode": "offline"}]}),
    ("rmia offline 3", {"attacks": [{"name": "rmia", "reference_models": 3}]}),
    ("rmia online 3", {"attacks": [{"name": "rmia", "reference_models": 3, "mode": "online"}]}),
    ("rmia offline_a 2", {"attacks": [{"name": "rmia", "offline_a": 2}]}),
    ("shadow with a mode", {"attacks": [{"name": "shadow", "mode": "online"}]}),
    (
        "reference attack without an architecture",
        {"model": {"path": "m.onnx"}, "attacks": ["loss", "rmia"]},
    ),
    (
        "architecture in the recipe",
        {
            "model": {"path": "m.onnx"},
            "attacks": ["rmia"],
            "reference_training": {"architecture": "resnet18"},
        },
    ),
    ("preprocessing none", {"preprocessing": "none"}),
    ("preprocessing None", {"preprocessing": " None "}),
    ("preprocessing nothing", {"preprocessing": "nothing"}),
    ("preprocessing mapping", {"preprocessing": {"mean": [0.5], "std": [0.25], "input_size": 32}}),
    ("input size pair", {"preprocessing": {"mean": [0.5], "std": [0.25], "input_size": [32, 24]}}),
    ("std zero", {"preprocessing": {"mean": [0.5], "std": [0.0]}}),
    ("max_auc number", {"gate": {"max_auc": 0.6}}),
    ("max_auc mapping", {"gate": {"max_auc": {"max": 0.6, "statistic": "upper"}}}),
    ("max_auc 1.5", {"gate": {"max_auc": 1.5}}),
    ("tpr number", {"gate": {"max_tpr_at_fpr": 0.1}}),
    ("tpr mapping", {"gate": {"max_tpr_at_fpr": {"fpr": 0.01, "max": 0.02}}}),
    ("tpr list", {"gate": {"max_tpr_at_fpr": [{"fpr": 0.01, "max": 0.02}, 0.2]}}),
    ("tpr empty list", {"gate": {"max_tpr_at_fpr": []}}),
    ("epsilon number", {"gate": {"max_epsilon_lower_bound": 2.0}}),
    ("epsilon upper", {"gate": {"max_epsilon_lower_bound": {"max": 2, "statistic": "upper"}}}),
    ("class auc", {"gate": {"max_class_auc": 0.7}}),
    ("increase", {"gate": {"max_auc_increase": 0.02, "max_tpr_at_fpr_increase": 0.01}}),
    ("no conditions", {"gate": {"baseline": "b.json"}}),
    ("gate typo", {"gate": {"max_acu": 0.6}}),
    ("device gpu", {"runtime": {"device": "gpu"}}),
    ("device tpu", {"runtime": {"device": "tpu"}}),
    ("executor name", {"runtime": {"executor": "local"}}),
    ("executor mapping", {"runtime": {"executor": {"kind": "local", "concurrency": 2}}}),
    ("executor unknown", {"runtime": {"executor": "slurm"}}),
    ("max minutes", {"runtime": {"max_minutes": 90}}),
    ("max minutes zero", {"runtime": {"max_minutes": 0}}),
    ("formats", {"outputs": {"formats": ["json", "junit"]}}),
    ("format pdf", {"outputs": {"formats": ["pdf"]}}),
    ("one audit file", {"data": {"audit": "all.npz"}}),
    ("audit file and members", {"data": {"audit": "all.npz", "members": "a.npz"}}),
    ("members only", {"data": {"members": "a.npz"}}),
    ("version 2", {"version": 2}),
]


@pytest.mark.parametrize(("description", "changes"), VARIANTS, ids=[v[0] for v in VARIANTS])
def test_schema_and_loader_agree(description: str, changes: dict[str, Any]) -> None:
    document = {**MINIMAL, **changes}
    assert (schema_problems(document) == []) == loader_accepts(document), (
        description,
        schema_problems(document),
    )
