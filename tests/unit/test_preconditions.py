"""The preconditions before any verdict, and the sample sizes behind them (pure functions).

The statistics are checked against references: the AUC's null standard deviation against
simulation, the perfect attack's epsilon against `epsilon.epsilon_lower_bound` run on perfectly
separated scores, shared-image counts against a plain Python set, and the tests' calibration
(an honest model is almost never refused) by repetition.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mia_audit.data.images import make_image_set
from mia_audit.errors import InputError, PolicyError
from mia_audit.evaluation import epsilon, sample_size
from mia_audit.evaluation.metrics import auc
from mia_audit.evaluation.settings import StatisticsSpec
from mia_audit.gate.spec import GateSpec, Suppression
from mia_audit.pipeline.preconditions import (
    MAX_WAIVER_DAYS,
    AuditSize,
    TargetFit,
    chance_accuracy,
    check_attacks_oriented,
    check_disjoint,
    check_sample_sizes,
    check_swapped_view,
    check_target_fit,
    check_waivers,
    count_shared,
)
from mia_audit.policy.run import Preconditions

STRICT = Preconditions()
SMALL_OK = Preconditions(allow_small_audit=True)

# --- sample sizes ------------------------------------------------------------------------------


def test_auc_sd_matches_simulation_under_no_separation() -> None:
    rng = np.random.default_rng(0)
    n = 46
    labels = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    aucs = [auc(labels, rng.random(2 * n)) for _ in range(4000)]
    assert np.std(aucs) == pytest.approx(sample_size.auc_sd(n, n), rel=0.05)


def test_minimums_are_the_smallest_sizes_that_meet_the_rule() -> None:
    limit = sample_size.DETECTABLE_EXCESS / 1.6448536269514722
    n = sample_size.min_per_side_auc()
    assert sample_size.auc_sd(n, n) <= limit < sample_size.auc_sd(n - 1, n - 1)
    m = sample_size.min_members_tpr()
    assert 0.5 / np.sqrt(m) <= limit < 0.5 / np.sqrt(m - 1)
    a = sample_size.min_per_side_advantage()
    assert np.sqrt(0.5 / a) <= limit < np.sqrt(0.5 / (a - 1))
    assert (n, m, a) == (46, 68, 136)  # the figures docs/preconditions.md quotes


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 400), confidence=st.sampled_from([0.9, 0.95, 0.99]))
def test_perfect_attack_epsilon_is_what_the_bound_gives_a_perfect_attack(
    n: int, confidence: float
) -> None:
    labels = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    bound = epsilon.epsilon_lower_bound(
        labels, labels.astype(float), delta=1e-5, confidence=confidence, random_state=3
    )
    assert sample_size.perfect_attack_epsilon(n, 1e-5, confidence) == pytest.approx(
        bound.epsilon, abs=1e-9
    )


@settings(max_examples=25, deadline=None)
@given(limit=st.floats(0.0, 4.0))
def test_epsilon_minimum_is_where_a_perfect_attack_first_clears_the_limit(limit: float) -> None:
    n = sample_size.min_per_side_epsilon(limit, 1e-5, 0.95)
    target = limit + sample_size.EPSILON_HEADROOM
    assert sample_size.perfect_attack_epsilon(n, 1e-5, 0.95) >= target
    if n > 2:
        assert sample_size.perfect_attack_epsilon(n - 1, 1e-5, 0.95) < target


def test_the_largest_checkable_epsilon_is_where_the_minimum_runs_out() -> None:
    largest = sample_size.largest_checkable_epsilon(1e-5, 0.95)
    assert 15 < largest < 20  # the bound grows with log(n): about 17.7 at 1e9 per side
    assert sample_size.min_per_side_epsilon(largest - 0.01, 1e-5, 0.95) <= 10**9
    with pytest.raises(ValueError):
        sample_size.min_per_side_epsilon(largest + 0.01, 1e-5, 0.95)


@pytest.mark.parametrize("limit", [20.0, 50.0, 1e6])
@pytest.mark.parametrize("allowed", [STRICT, SMALL_OK])
def test_an_epsilon_limit_no_audit_can_exceed_is_refused_not_waved_through(
    limit: float, allowed: Preconditions
) -> None:
    spec = _gate(max_epsilon_lower_bound=limit, max_auc=0.6)
    largest = sample_size.largest_checkable_epsilon(1e-5, 0.95)
    with pytest.raises(PolicyError) as error:  # not the bare ValueError that was exit 3
        check_sample_sizes(spec, AuditSize(10**6, 10**6), StatisticsSpec(), allowed)
    message = str(error.value)
    assert message.startswith(f"gate.max_epsilon_lower_bound: {limit:g} can never be exceeded")
    assert f"set a limit of at most {largest:.1f}" in message and "\n" not in message


def _gate(**conditions: Any) -> GateSpec:
    return GateSpec.model_validate(conditions)


@pytest.mark.parametrize(
    ("gate", "enough", "too_few", "needed"),
    [
        ({"max_auc": 0.6}, (46, 46), (45, 46), "at least 46 members and 46 non-members"),
        ({"max_auc": {"max": 0.6, "statistic": "upper"}}, (46, 46), (46, 45), "46"),
        ({"max_advantage": 0.3}, (136, 136), (135, 200), "at least 136 members"),
        (
            {"max_tpr_at_fpr": {"fpr": 0.05, "max": 0.1}},
            (68, 200),
            (67, 200),
            "at least 68 members and 200 non-members",
        ),
        ({"max_tpr_at_fpr": {"fpr": 0.05, "max": 0.1}}, (68, 200), (68, 199), "200 non-members"),
        ({"max_epsilon_lower_bound": 2.0}, (151, 151), (150, 151), "at least 151 members"),
        ({"max_auc_increase": 0.02}, (46, 46), (3, 3), "an AUC condition needs at least 46"),
    ],
)
def test_every_condition_has_a_minimum_sample_size(
    gate: dict[str, Any], enough: tuple[int, int], too_few: tuple[int, int], needed: str
) -> None:
    spec, statistics = _gate(**gate), StatisticsSpec()
    assert check_sample_sizes(spec, AuditSize(*enough), statistics, STRICT) == []
    with pytest.raises(PolicyError, match=needed) as error:
        check_sample_sizes(spec, AuditSize(*too_few), statistics, STRICT)
    assert "preconditions.allow_small_audit" in str(error.value)
    notes = check_sample_sizes(spec, AuditSize(*too_few), statistics, SMALL_OK)
    assert len(notes) == 1 and "smoke test, not evidence" in notes[0]


def test_class_auc_needs_a_class_of_the_auc_minimum() -> None:
    spec = _gate(max_class_auc=0.7)
    assert (
        check_sample_sizes(spec, AuditSize(900, 900, [(46, 50), (3, 3)]), StatisticsSpec(), STRICT)
        == []
    )
    with pytest.raises(PolicyError, match="no class has 46 members and 46 non-members"):
        check_sample_sizes(spec, AuditSize(900, 900, [(45, 50)]), StatisticsSpec(), STRICT)
    lowered = _gate(max_class_auc={"max": 0.7, "min_samples": 5})
    with pytest.raises(PolicyError, match="min_samples: 5 is below the 46"):
        check_sample_sizes(lowered, AuditSize(900, 900, [(46, 50)]), StatisticsSpec(), STRICT)


# --- the data ------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    n_first=st.integers(1, 30),
    n_second=st.integers(1, 30),
    copies=st.lists(st.tuples(st.integers(0, 29), st.integers(0, 29)), max_size=10),
    seed=st.integers(0, 2**16),
)
def test_count_shared_matches_a_set_of_pixel_bytes(
    n_first: int, n_second: int, copies: list[tuple[int, int]], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    first = rng.integers(0, 3, (n_first, 1, 2, 2), dtype=np.uint8)  # small: chance duplicates
    second = rng.integers(0, 3, (n_second, 1, 2, 2), dtype=np.uint8)
    for i, j in copies:
        second[j % n_second] = first[i % n_first]
    seen = {image.tobytes() for image in first}
    assert count_shared(first, second) == sum(image.tobytes() in seen for image in second)


def test_count_shared_sees_a_uint8_image_saved_again_as_float() -> None:
    images = np.random.default_rng(1).integers(0, 256, (5, 3, 4, 4), dtype=np.uint8)
    as_float = images[:2].astype(np.float32) / np.float32(255.0)
    assert count_shared(images, as_float) == 2


def _set(images: np.ndarray, name: str) -> Any:
    return make_image_set(images, np.zeros(len(images), int), source=name)


def test_check_disjoint_refuses_the_same_file_and_overlaps_above_the_tolerance() -> None:
    images = np.random.default_rng(2).integers(0, 256, (400, 4, 4, 3), dtype=np.uint8)
    a, b = _set(images[:200], "a"), _set(images[200:], "b")
    assert check_disjoint({"data.members": a, "data.non_members": b}, {}, 0.01) == []
    with pytest.raises(InputError, match=r"data\.non_members: is the same file as data\.members"):
        check_disjoint(
            {"data.members": a, "data.non_members": a},
            {"data.members": "f" * 64, "data.non_members": "f" * 64},
            0.01,
        )
    two = _set(np.concatenate([images[:2], images[202:]]), "b")  # 2 of 200 shared: 1 %
    notes = check_disjoint({"data.members": a, "data.non_members": two}, {}, 0.01)
    assert len(notes) == 1 and "2 of its 200 images also appear in data.members" in notes[0]
    three = _set(np.concatenate([images[:3], images[203:]]), "b")
    with pytest.raises(
        InputError, match=r"3 of its 200 images .* 1.5% of the smaller set\); .* \(tolerance 1.0%"
    ):
        check_disjoint({"data.members": a, "data.non_members": three}, {}, 0.01)


# --- the target ----------------------------------------------------------------------------------


def _fit(member_acc: float, non_member_acc: float, n: int = 1000, classes: int = 10) -> TargetFit:
    member = np.arange(n) < round(member_acc * n)
    non_member = np.arange(n) < round(non_member_acc * n)
    return TargetFit(member, non_member, np.arange(n) % classes, classes)


def test_chance_is_the_most_common_label_when_labels_are_unbalanced() -> None:
    assert chance_accuracy(np.array([0, 1, 2, 3]), 4) == 0.25
    assert chance_accuracy(np.array([0, 0, 0, 1]), 10) == 0.75


def test_a_target_near_chance_is_refused_unless_allowed() -> None:
    assert check_target_fit(_fit(0.99, 0.9), STRICT) == []
    for accuracy in (0.1, 0.12, 0.19):  # the floor for 10 classes is 0.19
        with pytest.raises(InputError, match="preprocessing: the target classifies") as error:
            check_target_fit(_fit(accuracy, accuracy), STRICT)
        assert "not well above chance (10.0%, 1/10 classes" in str(error.value)
    notes = check_target_fit(_fit(0.12, 0.12), Preconditions(allow_weak_target=True))
    assert "allowed by preconditions.allow_weak_target" in notes[0]


def test_a_few_correct_members_are_not_evidence_unless_the_audit_may_be_small() -> None:
    few = _fit(1.0, 1.0, n=3)
    with pytest.raises(InputError, match="not well above chance"):
        check_target_fit(few, STRICT)
    assert check_target_fit(few, SMALL_OK) == []


def test_members_classified_worse_than_non_members_look_swapped() -> None:
    with pytest.raises(InputError, match=r"look swapped: .* members \(89.0%\) .* \(99.0%"):
        check_target_fit(_fit(0.89, 0.99, n=200), STRICT)
    assert check_target_fit(_fit(0.97, 0.99, n=200), STRICT) == []  # within noise


def test_an_attack_scoring_members_below_non_members_looks_swapped() -> None:
    rng = np.random.default_rng(4)
    is_member = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    scores = rng.normal(size=600) - is_member  # members lower
    with pytest.raises(InputError, match="attack 'loss' scores the members significantly below"):
        check_attacks_oriented(is_member, {"loss": scores, "entropy": rng.normal(size=600)})
    check_attacks_oriented(is_member, {"loss": -scores})


def test_attacks_on_a_model_that_does_not_leak_are_almost_never_called_swapped() -> None:
    rng = np.random.default_rng(5)
    is_member = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    refused = 0
    for _ in range(300):
        try:
            check_attacks_oriented(is_member, {str(i): rng.normal(size=200) for i in range(8)})
        except InputError:
            refused += 1
    assert refused <= 2  # expected 0.3 at the test's 1e-3 level


# --- waivers -------------------------------------------------------------------------------------


def test_waivers_may_run_at_most_a_year() -> None:
    today = date(2026, 12, 1)

    def waiver(days: int) -> Suppression:
        return Suppression(condition="auc", reason="accepted", expires=today + timedelta(days=days))

    check_waivers([waiver(MAX_WAIVER_DAYS)], today)
    with pytest.raises(PolicyError, match=r"gate.suppressions\[1\].expires: 2027-12-03 is more"):
        check_waivers([waiver(1), waiver(MAX_WAIVER_DAYS + 1)], today)


def test_the_swapped_view_refuses_a_passing_run_and_names_chance_in_small_audits() -> None:
    problem = "data: members and non-members look swapped: attack 'loss' scores ..."
    assert check_swapped_view(None, gate_passed=True) == []
    with pytest.raises(InputError) as default_size:
        check_swapped_view(problem, gate_passed=True)
    assert "check that data.members holds" in str(default_size.value)
    assert "by chance" not in str(default_size.value)
    with pytest.raises(InputError) as small:
        check_swapped_view(problem, gate_passed=True, min_false_positives=1)
    message = str(small.value)
    assert message.startswith(problem) and "\n" not in message
    assert "statistics.min_false_positives 1 (default 10)" in message and "by chance" in message
    (note,) = check_swapped_view(problem, gate_passed=False, min_false_positives=1)
    assert "the verdict is FAIL either way" in note  # a failing run keeps its FAIL
