"""Mistakes in a policy document itself (not in a file it names): the console script must refuse
each (tests/e2e/test_bad_inputs.py) and so must the committed JSON Schema
(tests/unit/test_schema.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def misspelt_key(document: dict[str, Any]) -> None:
    document["model"]["num_clases"] = document["model"].pop("num_classes")


def seed_not_a_number(document: dict[str, Any]) -> None:
    document["runtime"]["seed"] = "abc"


def odd_online_lira(document: dict[str, Any]) -> None:
    # Online LiRA needs an even number of models; rejected before any model is trained.
    document["attacks"] = ["loss", {"name": "lira", "reference_models": 3, "mode": "online"}]


def misspelt_recipe_key(document: dict[str, Any]) -> None:
    document["reference_training"] = {"epoch": 20, "batch_size": 256}


#: The cases whose policy itself is wrong (not a file it names): the committed JSON Schema
#: must refuse each of them too (tests/unit/test_schema.py applies them to the example policies).
POLICY_MISTAKES: dict[str, Callable[[dict[str, Any]], None]] = {
    "unknown-key": misspelt_key,
    "wrong-type": seed_not_a_number,
    "lira-invalid": odd_online_lira,
    "reference-training-typo": misspelt_recipe_key,
}


