"""The reference-model attacks (lira, rmia, shadow) at the attack level, on synthetic signals:
LiRA equals a direct scipy implementation on the φ hidden in the logits, RMIA equals the dense
definition with the attack's temperature and masks, shadow finds a planted leak, and all of them
record their parameters."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.metrics import roc_auc_score

from mia_audit.attacks.base import AttackContext, ViewLogits
from mia_audit.attacks.lira import LiraAttack, LiraConfig, resolve_variance
from mia_audit.attacks.queries import enumerate_views
from mia_audit.attacks.reference_sets import Mode, ReferenceRequest, ReferenceSet
from mia_audit.attacks.rmia import RmiaAttack, RmiaConfig
from mia_audit.attacks.scoring.lira import Variance
from mia_audit.attacks.scoring.rmia import rmia_scores_dense, true_class_probability
from mia_audit.attacks.shadow import ShadowAttack, ShadowConfig
from tests.oracles import direct_offline, direct_online

VIEWS = enumerate_views(mirror=True, shift=0)  # identity and mirror: two queries


def phi_logits(phi: np.ndarray) -> np.ndarray:
    """Two-class logits [φ, 0] with label 0 have scaled logit exactly φ: (..., n) -> (..., n, 2)."""
    return np.stack([phi, np.zeros_like(phi)], axis=-1)


class FixedProvider:
    """A ReferenceProvider that hands out one prepared set and records the requests."""

    def __init__(self, reference_set: ReferenceSet) -> None:
        self.reference_set = reference_set
        self.requests: list[ReferenceRequest] = []

    def get(self, request: ReferenceRequest) -> ReferenceSet:
        self.requests.append(request)
        return self.reference_set


def context_for(
    target: np.ndarray, labels: np.ndarray, reference_set: ReferenceSet
) -> tuple[AttackContext, FixedProvider]:
    provider = FixedProvider(reference_set)
    context = AttackContext(
        target=ViewLogits(views=VIEWS, logits=target),
        labels=labels,
        is_member=np.zeros(len(labels), dtype=bool),
        random_state=0,
        references=provider,
    )
    return context, provider


def lira_world(seed: int, m: int, n: int, online: bool) -> dict[str, np.ndarray]:
    """φ per (model, view, sample): difficulty + 1.5 if IN, noise; the target's members shifted."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, 2, n)
    if online:
        in_audit = np.zeros((m, n), dtype=bool)
        for i in range(n):
            in_audit[rng.permutation(m)[: m // 2], i] = True
    else:
        in_audit = np.zeros((m, n), dtype=bool)
    q = len(VIEWS)
    reference = difficulty[None, None] + 1.5 * in_audit[:, None] + rng.normal(0, 0.5, (m, q, n))
    member = rng.random(n) < 0.5
    target = difficulty[None] + 1.5 * member[None] + rng.normal(0, 0.5, (q, n))
    return {"reference": reference, "target": target, "in_audit": in_audit, "member": member}


def reference_set(
    audit_logits: np.ndarray,
    in_audit: np.ndarray,
    mode: Mode = "online",
    population: np.ndarray | None = None,
    in_population: np.ndarray | None = None,
    population_labels: np.ndarray | None = None,
    target_population: np.ndarray | None = None,
) -> ReferenceSet:
    m = audit_logits.shape[0]
    labels = np.zeros(0, np.int64) if population_labels is None else population_labels
    return ReferenceSet(
        mode=mode,
        views=VIEWS,
        audit=audit_logits,
        in_audit=in_audit,
        population=population,
        in_population=np.zeros((m, len(labels)), bool) if in_population is None else in_population,
        population_labels=labels,
        target_population=target_population,
        model_keys=tuple(f"model{j}" for j in range(m)),
    )


@pytest.mark.parametrize("variance", ["global", "per_example"])
@pytest.mark.parametrize("mode", ["online", "offline"])
def test_lira_attack_equals_direct_scipy(mode: Mode, variance: Variance) -> None:
    world = lira_world(seed=3, m=8, n=40, online=mode == "online")
    labels = np.zeros(40, dtype=np.int64)
    refs = reference_set(phi_logits(world["reference"]), world["in_audit"], mode)
    context, provider = context_for(phi_logits(world["target"]), labels, refs)
    attack = LiraAttack(
        LiraConfig(name="lira", reference_models=8, mode=mode, variance=variance, queries=2)
    )
    output = attack.score(context)
    phi_target = world["target"].T  # (n, q)
    phi_reference = world["reference"].transpose(0, 2, 1)  # (m, n, q)
    if mode == "online":
        expected = direct_online(phi_target, phi_reference, world["in_audit"], variance)
    else:
        expected = direct_offline(phi_target, phi_reference, ~world["in_audit"], variance)
    np.testing.assert_allclose(output.scores, expected, rtol=1e-9, atol=1e-9)
    assert provider.requests == [ReferenceRequest(mode, 8, VIEWS, population=False)]
    assert output.parameters["variance_used"] == variance
    assert output.parameters["n_queries"] == 2
    assert output.parameters["reference_models"] == 8
    assert roc_auc_score(world["member"], output.scores) > 0.8


def test_lira_variance_auto_is_global_under_64_models() -> None:
    assert resolve_variance("auto", 63) == "global"
    assert resolve_variance("auto", 64) == "per_example"
    assert resolve_variance("per_example", 2) == "per_example"


@pytest.mark.parametrize("count", [1, 3])
def test_online_needs_an_even_number_of_models(count: int) -> None:
    with pytest.raises(ValidationError, match="even number"):
        LiraConfig(name="lira", reference_models=count, mode="online")
    LiraConfig(name="lira", reference_models=count, mode="offline")


def rmia_world(seed: int, m: int, n: int, z: int) -> dict[str, Any]:
    """Logits of 3 classes; members of the target (and IN samples of references) are more
    confident in the true class."""
    rng = np.random.default_rng(seed)
    q = len(VIEWS)

    def logits(shape: tuple[int, ...], boost: np.ndarray, labels: np.ndarray) -> np.ndarray:
        values = rng.normal(0, 1, (*shape, 3))
        np.put_along_axis(
            values,
            np.broadcast_to(labels[..., None], (*shape, 1)),
            np.take_along_axis(values, np.broadcast_to(labels[..., None], (*shape, 1)), -1)
            + boost[..., None],
            axis=-1,
        )
        return values

    labels_x, labels_z = rng.integers(0, 3, n), rng.integers(0, 3, z)
    member = rng.random(n) < 0.5
    in_x = np.zeros((m, n), bool)
    for i in range(n):
        in_x[rng.permutation(m)[: m // 2], i] = True
    in_z = rng.random((m, z)) < 0.5
    return {
        "target": logits((q, n), np.broadcast_to(2.0 * member, (q, n)), labels_x),
        "reference": logits((m, q, n), 2.0 * in_x[:, None].repeat(q, 1), labels_x),
        "target_z": logits((q, z), np.zeros((q, z)), labels_z),
        "reference_z": logits((m, q, z), 2.0 * in_z[:, None].repeat(q, 1), labels_z),
        "labels_x": labels_x,
        "labels_z": labels_z,
        "in_x": in_x,
        "in_z": in_z,
        "member": member,
    }


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_rmia_attack_equals_the_dense_definition(mode: Mode) -> None:
    w = rmia_world(seed=5, m=4, n=60, z=80)
    in_x = w["in_x"] if mode == "online" else np.zeros_like(w["in_x"])
    refs = reference_set(
        w["reference"], in_x, mode, w["reference_z"], w["in_z"], w["labels_z"], w["target_z"]
    )
    context, _ = context_for(w["target"], w["labels_x"], refs)
    config = RmiaConfig(
        name="rmia", reference_models=4, mode=mode, queries=2, temperature=1.5, offline_a=0.4
    )
    output = RmiaAttack(config).score(context)

    def p(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return np.swapaxes(true_class_probability(logits, labels, 1.5), -1, -2)

    expected = rmia_scores_dense(
        p(w["target"], w["labels_x"]),
        p(w["reference"], w["labels_x"]),
        p(w["target_z"], w["labels_z"]),
        p(w["reference_z"], w["labels_z"]),
        in_mask_x=w["in_x"] if mode == "online" else None,
        in_mask_z=w["in_z"],
        gamma=2.0,
        offline_a=0.4,
        aggregation="majority",
    )
    np.testing.assert_array_equal(output.scores, expected)
    assert output.parameters["offline_a_used"] == 0.4
    assert output.parameters["offline_a_source"] == "policy"
    assert roc_auc_score(w["member"], output.scores) > 0.7


def test_rmia_tunes_offline_a_on_reference_models() -> None:
    w = rmia_world(seed=6, m=4, n=60, z=80)
    refs = reference_set(
        w["reference"],
        np.zeros_like(w["in_x"]),
        "offline",
        w["reference_z"],
        w["in_z"],
        w["labels_z"],
        w["target_z"],
    )
    context, _ = context_for(w["target"], w["labels_x"], refs)
    output = RmiaAttack(RmiaConfig(name="rmia", reference_models=4)).score(context)
    assert 0.0 <= output.parameters["offline_a_used"] <= 1.0
    assert output.parameters["offline_a_source"] == "tuned on reference models"
    one_model = reference_set(
        w["reference"][:1],
        np.zeros_like(w["in_x"][:1]),
        "offline",
        w["reference_z"][:1],
        w["in_z"][:1],
        w["labels_z"],
        w["target_z"],
    )
    context, _ = context_for(w["target"], w["labels_x"], one_model)
    output = RmiaAttack(RmiaConfig(name="rmia", reference_models=1)).score(context)
    assert output.parameters["offline_a_used"] == 0.3


def test_rmia_offline_a_must_lie_in_0_1() -> None:
    with pytest.raises(ValidationError):
        RmiaConfig(name="rmia", offline_a=1.5)


def test_shadow_attack_finds_a_planted_leak() -> None:
    """Shadow models' IN samples are more confident; so are the target's members."""
    w = rmia_world(seed=7, m=3, n=200, z=400)
    w["in_z"] = np.zeros((3, 400), bool)
    rng = np.random.default_rng(0)
    for j in range(3):
        w["in_z"][j, rng.choice(400, 200, replace=False)] = True
    w["reference_z"] = rmia_world(seed=8, m=3, n=1, z=400)["reference_z"]
    boost = 2.0 * w["in_z"][:, None].repeat(len(VIEWS), 1)
    labels_z = w["labels_z"]
    np.put_along_axis(
        w["reference_z"],
        np.broadcast_to(labels_z[None, None, :, None], (*boost.shape, 1)),
        np.take_along_axis(
            w["reference_z"], np.broadcast_to(labels_z[None, None, :, None], (*boost.shape, 1)), -1
        )
        + boost[..., None],
        axis=-1,
    )
    refs = reference_set(
        np.zeros((3, 2, 200, 3)),
        np.zeros((3, 200), bool),
        "offline",
        w["reference_z"],
        w["in_z"],
        labels_z,
        w["target_z"],
    )
    context, provider = context_for(w["target"], w["labels_x"], refs)
    config = ShadowConfig(
        name="shadow", shadow_models=3, classifier="logistic_regression", queries=2
    )
    output = ShadowAttack(config).score(context)
    assert provider.requests[0].population and provider.requests[0].mode == "offline"
    assert roc_auc_score(w["member"], output.scores) > 0.75
    assert output.parameters["n_examples"] == 3 * 2 * 200
