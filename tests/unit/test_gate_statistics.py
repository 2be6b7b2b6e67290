"""A gate you can trust: CIs, epsilon lower bounds, slices, baselines and suppressions.

Unit tests run on synthetic scores from known distributions (fast, CPU); one end-to-end test
goes through the console script on the real digits target.
"""

from __future__ import annotations

import json
import math
import re
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import beta, norm

from mia_audit.errors import EXIT_INVALID, InputError, PolicyError
from mia_audit.evaluation import bootstrap as stats
from mia_audit.evaluation import epsilon, metrics
from mia_audit.evaluation.evaluate import (
    AttackIdentity,
    AuditSamples,
    EvaluationSettings,
    evaluate_attack,
)
from mia_audit.evaluation.settings import StatisticsSpec
from mia_audit.gate.baseline import load_baseline
from mia_audit.gate.evaluate import (
    AttackMetrics,
    ClassAuc,
    check_gate_support,
    evaluate_gate,
    gate_baseline,
    gate_metrics,
    gate_passed,
)
from mia_audit.gate.spec import ConditionId, GateSpec
from mia_audit.policy.loading import parse_policy
from mia_audit.policy.schema import Policy
from mia_audit.reports.junit_report import render_junit
from mia_audit.reports.markdown_report import render_markdown
from mia_audit.result import SCHEMA_VERSION, AttackResult, Condition
from tests.results import make_result

FPRS = (0.05, 0.01, 0.001, 0.0)
MINIMAL: dict[str, Any] = {
    "version": 1,
    "name": "p",
    "model": {"path": "m.onnx"},
    "data": {"members": "a.npz", "non_members": "b.npz"},
    "preprocessing": "none",
    "attacks": ["loss", "confidence"],
    "gate": {"max_auc": 0.6},
}


def parse(**changes: Any) -> Policy:
    return parse_policy({**MINIMAL, **changes}, base_dir=Path("/base"))


def gate(**conditions: Any) -> GateSpec:
    return parse(gate=conditions).gate


def normal_audit(
    seed: int, n: int, shift: float, n_classes: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n members and n non-members; unit-normal scores, members shifted up by `shift`."""
    rng = np.random.default_rng(seed)
    is_member = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    labels = rng.integers(0, n_classes, size=2 * n)
    return is_member, rng.normal(size=2 * n) + shift * is_member, labels


def scored(
    is_member: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int = 0,
    spec: StatisticsSpec | None = None,
    correct: np.ndarray | None = None,
) -> AttackResult:
    """What the audit records for one attack, statistics included."""
    samples = AuditSamples(is_member, labels, np.arange(len(labels)).astype(str), None, correct)
    settings = EvaluationSettings(FPRS, spec or StatisticsSpec(), seed)
    return evaluate_attack(AttackIdentity("loss", "loss"), scores, samples, settings)


# --- confidence intervals -------------------------------------------------------------------


def test_audit_intervals_cover_the_truth_about_95_percent() -> None:
    """The CIs the audit writes, on 500 independent audits with known truth.

    Unit normals, members shifted by d = 1: AUC = Phi(d / sqrt 2) and TPR at FPR a =
    1 - Phi(Phi^-1(1 - a) - d). Observed coverage: AUC 0.938, TPR@0.05 0.946 (at n = 300 a
    side the percentile bootstrap undercovers slightly). With 500 audits the standard error is
    ~1 point, so [0.91, 0.975] leaves about 3 either side, while a zero-width CI (coverage 0)
    and one that always covers (coverage 1) both fail; the mean AUC width must also be near
    the analytic (Hanley-McNeil) width.
    """
    shift, n, audits = 1.0, 300, 500
    auc_truth = float(norm.cdf(shift / math.sqrt(2.0)))
    tpr_truth = float(1.0 - norm.cdf(norm.ppf(0.95) - shift))
    spec = StatisticsSpec(n_resamples=400)
    auc_covered = tpr_covered = 0
    widths = []
    for seed in range(audits):
        is_member, scores, labels = normal_audit(5000 + seed, n, shift)
        result = scored(is_member, scores, labels, seed=seed, spec=spec)
        assert result.auc_ci is not None
        low, high = result.auc_ci
        auc_covered += low <= auc_truth <= high
        widths.append(high - low)
        tpr_low, tpr_high = result.tpr_at_fpr_ci["0.05"]
        tpr_covered += tpr_low <= tpr_truth <= tpr_high
    assert 0.91 <= auc_covered / audits <= 0.975
    assert 0.91 <= tpr_covered / audits <= 0.975
    q1, q2 = auc_truth / (2 - auc_truth), 2 * auc_truth**2 / (1 + auc_truth)
    variance = auc_truth * (1 - auc_truth) + (n - 1) * (q1 + q2 - 2 * auc_truth**2)
    analytic_width = 2 * 1.959964 * math.sqrt(variance / n**2)
    # observed: mean width 0.0745, analytic 0.0765
    assert 0.8 * analytic_width <= float(np.mean(widths)) <= 1.2 * analytic_width


def test_statistics_are_bit_identical_for_the_same_seed() -> None:
    is_member, scores, labels = normal_audit(1, 400, 0.8, n_classes=4)
    correct = np.random.default_rng(2).random(len(scores)) < 0.8
    first = scored(is_member, scores, labels, seed=7, correct=correct)
    again = scored(is_member, scores, labels, seed=7, correct=correct)
    other = scored(is_member, scores, labels, seed=8, correct=correct)
    assert first.model_dump_json() == again.model_dump_json()
    assert first.auc_ci != other.auc_ci
    assert set(first.tpr_at_fpr_ci) == set(first.tpr_at_fpr) == {"0.05", "0.01", "0.001", "0"}
    assert first.ci_level == 0.95 and first.ci_resamples == 1000


def test_intervals_bracket_sensible_values_and_slices_get_their_own() -> None:
    is_member, scores, labels = normal_audit(3, 500, 1.0, n_classes=3)
    correct = np.random.default_rng(4).random(len(scores)) < 0.7
    result = scored(is_member, scores, labels, correct=correct)
    assert result.auc_ci is not None and result.advantage_ci is not None
    assert result.auc_ci[0] < result.auc < result.auc_ci[1]
    assert result.advantage_ci[0] < result.advantage < result.advantage_ci[1]
    assert all(row.auc_ci is not None for row in result.per_class)
    assert [s.name for s in result.slices] == ["correct", "misclassified"]
    for piece in result.slices:
        mask = correct if piece.name == "correct" else ~correct
        assert piece.n_members == int(is_member[mask].sum())
        assert piece.auc == metrics.auc(is_member[mask], scores[mask])
        assert piece.auc_ci is not None and piece.auc_ci[0] <= piece.auc <= piece.auc_ci[1]


def test_unsupported_fprs_follow_min_false_positives() -> None:
    is_member, scores, labels = normal_audit(5, 500, 0.5)
    assert scored(is_member, scores, labels).tpr_at_fpr_supported["0.01"] is False
    relaxed = scored(is_member, scores, labels, spec=StatisticsSpec(min_false_positives=5))
    assert relaxed.tpr_at_fpr_supported["0.01"] is True


@pytest.mark.parametrize(
    ("n_pos", "n_neg", "decimals"), [(300, 400, None), (50, 80, 0), (3, 2, None)]
)
def test_advantage_replicates_equal_plain_metric_on_materialised_resamples(
    n_pos: int, n_neg: int, decimals: int | None
) -> None:
    rng = np.random.default_rng(6)
    labels = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    scores = rng.normal(size=n_pos + n_neg) + 0.6 * labels
    if decimals is not None:
        scores = np.round(scores, decimals)
    fast = stats.bootstrap_replicates(
        labels, scores, (), n_resamples=60, random_state=9, with_advantage=True
    )
    slow = [
        metrics.advantage(labels[i], scores[i])
        for i in stats.resample_indices(labels, scores, 60, 9)
    ]
    assert fast.advantage is not None
    np.testing.assert_array_equal(fast.advantage, slow)


# --- epsilon lower bound --------------------------------------------------------------------


def test_epsilon_bound_matches_direct_beta_quantiles() -> None:
    is_member, scores, labels = normal_audit(11, 600, 1.5)
    spec = StatisticsSpec(confidence_level=0.9, delta=1e-3)
    bound = scored(is_member, scores, labels, seed=3, spec=spec).epsilon_lower_bound
    assert bound is not None
    _, evaluation_half = epsilon.split_selection_evaluation(is_member, 3)
    members = is_member[evaluation_half]
    called = scores[evaluation_half] >= bound.threshold
    tp, n_pos = int((called & members).sum()), int(members.sum())
    fp, n_neg = int((called & ~members).sum()), int((~members).sum())
    alpha = 1 - 0.9
    assert 0 < tp < n_pos and 0 < fp < n_neg  # no closed-form edge: every quantile is a beta's
    tpr_low = beta.ppf(alpha / 2, tp, n_pos - tp + 1)
    tpr_high = beta.ppf(1 - alpha / 2, tp + 1, n_pos - tp)
    fpr_low = beta.ppf(alpha / 2, fp, n_neg - fp + 1)
    fpr_high = beta.ppf(1 - alpha / 2, fp + 1, n_neg - fp)
    expected = max(
        math.log((tpr_low - 1e-3) / fpr_high), math.log((1 - fpr_high - 1e-3) / (1 - tpr_low)), 0.0
    )
    assert bound.value == pytest.approx(expected, rel=1e-12)
    assert bound.value > 0.5  # a shift of 1.5 standard deviations leaks a lot
    assert bound.tpr == tp / n_pos and bound.fpr == fp / n_neg
    assert bound.tpr_ci == pytest.approx((tpr_low, tpr_high), rel=1e-12)
    assert bound.fpr_ci == pytest.approx((fpr_low, fpr_high), rel=1e-12)
    assert (bound.delta, bound.confidence) == (1e-3, 0.9)
    assert bound.n_selection + bound.n_evaluation == len(scores)


def test_epsilon_condition_gates_the_strongest_attack() -> None:
    spec = gate(max_epsilon_lower_bound=0.5)
    metrics_ = {
        "loss": attack_metrics(0.6, epsilon=0.2),
        "confidence": attack_metrics(0.6, epsilon=0.9),
    }
    (condition,) = evaluate_gate(spec, metrics_, today=date(2025, 1, 1))
    assert (condition.id, condition.attack, condition.value, condition.passed) == (
        "epsilon_lower_bound",
        "confidence",
        0.9,
        False,
    )


def test_epsilon_condition_refuses_statistic_upper() -> None:
    with pytest.raises(PolicyError, match="already a Clopper-Pearson confidence bound"):
        gate(max_epsilon_lower_bound={"max": 1.0, "statistic": "upper"})
    assert gate(max_epsilon_lower_bound={"max": 4, "attacks": ["loss"]}).max_epsilon_lower_bound


# --- statistic: upper -----------------------------------------------------------------------


def attack_metrics(
    auc: float,
    auc_ci: tuple[float, float] | None = None,
    *,
    tpr: float = 0.1,
    epsilon: float | None = None,
    classes: tuple[ClassAuc, ...] = (),
) -> AttackMetrics:
    ci = {ConditionId("auc"): auc_ci} if auc_ci is not None else {}
    return AttackMetrics(
        auc=auc, advantage=0.1, tpr_at_fpr={0.05: tpr}, ci=ci, epsilon=epsilon, classes=classes
    )


def test_design_contract_forms_of_max_auc_parse() -> None:
    assert gate(max_auc=0.6).max_auc.statistic == "point"  # type: ignore[union-attr]
    upper = gate(max_auc={"max": 0.6, "statistic": "upper"}).max_auc
    assert upper is not None and (upper.max, upper.statistic) == (0.6, "upper")
    statistics = parse().statistics
    assert (statistics.confidence_level, statistics.n_resamples) == (0.95, 1000)
    assert (statistics.delta, statistics.min_false_positives) == (1e-5, 10)


def test_upper_statistic_changes_the_verdict_on_real_intervals() -> None:
    is_member, scores, labels = normal_audit(21, 300, 0.35)
    result = scored(is_member, scores, labels)
    assert result.auc_ci is not None
    threshold = round((result.auc + result.auc_ci[1]) / 2, 4)  # between point and upper bound
    measured = {"loss": gate_metrics(result)}
    (point,) = evaluate_gate(gate(max_auc=threshold), measured)
    (upper,) = evaluate_gate(gate(max_auc={"max": threshold, "statistic": "upper"}), measured)
    assert point.passed and point.value == result.auc and point.statistic == "point"
    assert not upper.passed and upper.value == result.auc_ci[1] and upper.statistic == "upper"
    assert upper.point == result.auc and upper.ci == result.auc_ci


def test_upper_statistic_is_never_below_the_point_estimate() -> None:
    odd = {"loss": attack_metrics(0.65, (0.55, 0.62))}  # a percentile CI below the estimate
    (condition,) = evaluate_gate(gate(max_auc={"max": 0.63, "statistic": "upper"}), odd)
    assert condition.value == 0.65 and not condition.passed


def test_class_auc_condition_strongest_class_decides() -> None:
    rows = (
        ClassAuc("0", 0.55, (0.5, 0.6), 46, 50),
        ClassAuc("1 (cat)", 0.71, (0.6, 0.8), 50, 46),
        ClassAuc("2", 0.99, (0.9, 1.0), 45, 60),  # too small to gate (the AUC minimum is 46)
    )
    measured = {"loss": attack_metrics(0.6, classes=rows), "confidence": attack_metrics(0.6)}
    (condition,) = evaluate_gate(gate(max_class_auc=0.7), measured)
    assert (condition.attack, condition.slice, condition.value) == ("loss", "class 1 (cat)", 0.71)
    assert not condition.passed
    assert condition.note is not None and "class 2" in condition.note
    (upper,) = evaluate_gate(gate(max_class_auc={"max": 0.75, "statistic": "upper"}), measured)
    assert upper.value == 0.8 and not upper.passed
    with pytest.raises(PolicyError, match="no class has 60 members"):
        evaluate_gate(gate(max_class_auc={"max": 0.7, "min_samples": 60}), measured)


# --- FPR support ----------------------------------------------------------------------------


def test_unsupported_fpr_is_a_policy_error_naming_the_count() -> None:
    spec = gate(max_tpr_at_fpr=[{"fpr": 0.05, "max": 0.1}, {"fpr": 0.001, "max": 0.01}])
    with pytest.raises(PolicyError) as error:
        check_gate_support(spec, 5000, 10)
    message = str(error.value)
    assert error.value.exit_code == EXIT_INVALID
    assert "gate.max_tpr_at_fpr" in message and "10000 non-members" in message
    assert "has 5000" in message and "\n" not in message
    check_gate_support(spec, 10000, 10)  # exactly enough
    check_gate_support(spec, 5000, 5)  # a laxer rule
    with pytest.raises(PolicyError, match="FPR 0 allows no false positive"):
        check_gate_support(gate(max_tpr_at_fpr={"fpr": 0, "max": 0.1}), 10**6, 10)
    increase = gate(max_tpr_at_fpr_increase={"fpr": 0.01, "max": 0.02})
    with pytest.raises(
        PolicyError, match=re.escape("gate.max_tpr_at_fpr_increase: FPR 0.01 needs at least 1000")
    ):
        check_gate_support(increase, 999, 10)


# --- baselines ------------------------------------------------------------------------------


def write_baseline(path: Path, attacks: dict[str, float], version: int = SCHEMA_VERSION) -> Path:
    """A minimal result.json: the fields a baseline needs (and one it ignores)."""
    document = {
        "schema_version": version,
        "policy": {"name": "previous"},
        "tool": {"version": "0.0.9"},
        "attacks": [
            {"id": name, "auc": auc, "tpr_at_fpr": {"0.05": auc / 4}, "extra": 1}
            for name, auc in attacks.items()
        ],
    }
    path.write_text(json.dumps(document))
    return path


def test_baseline_increase_passes_and_fails_side_by_side(tmp_path: Path) -> None:
    baseline = load_baseline(write_baseline(tmp_path / "r.json", {"loss": 0.60, "confidence": 0.7}))
    now = {"loss": attack_metrics(0.62, tpr=0.2), "confidence": attack_metrics(0.69, tpr=0.1)}
    spec = gate(max_auc_increase=0.02, max_tpr_at_fpr_increase={"fpr": 0.05, "max": 0.01})
    auc, tpr = evaluate_gate(spec, now, baseline=baseline)
    assert (auc.id, auc.attack, auc.passed) == ("auc_increase", "loss", True)  # 0.02 exactly
    assert (auc.baseline_value, auc.current_value, auc.value) == (0.60, 0.62, 0.02)
    assert auc.per_attack == {"loss": 0.02, "confidence": -0.01}
    assert (tpr.id, tpr.attack, tpr.passed) == ("tpr_at_fpr_increase@0.05", "loss", False)
    assert (tpr.baseline_value, tpr.current_value, tpr.value) == (0.15, 0.2, 0.05)
    assert baseline.info.policy_name == "previous" and len(baseline.info.sha256) == 64


def test_baseline_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    old = write_baseline(tmp_path / "old.json", {"loss": 0.6}, version=SCHEMA_VERSION - 1)
    with pytest.raises(InputError) as error:
        load_baseline(old)
    assert error.value.exit_code == EXIT_INVALID
    assert f"schema_version {SCHEMA_VERSION - 1} cannot be compared" in str(error.value)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_baseline(tmp_path / "bad.json")
    with pytest.raises(InputError, match="cannot read it"):
        load_baseline(tmp_path / "missing.json")


def test_a_baseline_edited_after_its_run_is_refused(tmp_path: Path) -> None:
    from mia_audit.result import content_sha256

    path = write_baseline(tmp_path / "r.json", {"loss": 0.6})
    document = json.loads(path.read_text())
    document["sha256"] = content_sha256(document)
    path.write_text(json.dumps(document))
    assert load_baseline(path).attacks["loss"].auc == 0.6  # intact
    document["attacks"][0]["auc"] = 0.7
    path.write_text(json.dumps(document))
    with pytest.raises(InputError, match="sha256: does not match the file's content") as error:
        load_baseline(path)
    assert error.value.exit_code == EXIT_INVALID and str(error.value).startswith("baseline: ")
    del document["sha256"]  # a result from before results recorded one is read as it is
    path.write_text(json.dumps(document))
    assert load_baseline(path).attacks["loss"].auc == 0.7


def test_baseline_conditions_need_a_baseline_and_shared_attacks(tmp_path: Path) -> None:
    with pytest.raises(
        PolicyError, match=re.escape("pass --baseline previous/result.json or set gate.baseline")
    ):
        gate_baseline(gate(max_auc_increase=0.01))
    assert gate_baseline(gate(max_auc=0.6)) is None
    elsewhere = load_baseline(write_baseline(tmp_path / "r.json", {"rmia": 0.6}))
    with pytest.raises(InputError, match="has none of the attacks"):
        evaluate_gate(
            gate(max_auc_increase=0.01), {"loss": attack_metrics(0.6)}, baseline=elsewhere
        )


def test_policy_baseline_path_resolves_against_the_policy_folder() -> None:
    spec = gate(max_auc_increase=0.02, baseline="prev/result.json")
    assert spec.baseline == Path("/base/prev/result.json")


# --- suppressions ---------------------------------------------------------------------------


def failing_auc_gate(*suppressions: dict[str, Any]) -> GateSpec:
    return gate(max_auc=0.6, max_advantage=0.5, suppressions=list(suppressions))


FAILING = {"loss": attack_metrics(0.7), "confidence": attack_metrics(0.65)}


def test_a_waived_failure_passes_the_gate_and_stays_visible() -> None:
    spec = failing_auc_gate(
        {"condition": "auc", "reason": "accepted for 1.2", "expires": "2025-03-31"}
    )
    for today in (date(2025, 1, 1), date(2025, 3, 31)):  # the expiry day is still covered
        auc, advantage = evaluate_gate(spec, FAILING, today=today)
        assert (auc.passed, auc.waived, auc.waiver_expired) == (False, True, False)
        assert (auc.waiver_reason, auc.waiver_expires) == ("accepted for 1.2", date(2025, 3, 31))
        assert advantage.passed and not advantage.waived
        assert gate_passed([auc, advantage])


def test_an_expired_waiver_no_longer_applies() -> None:
    spec = failing_auc_gate({"condition": "auc", "reason": "old", "expires": date(2025, 3, 31)})
    auc, _ = evaluate_gate(spec, FAILING, today=date(2025, 4, 1))
    assert (auc.passed, auc.waived, auc.waiver_expired) == (False, False, True)
    assert auc.waiver_expires == date(2025, 3, 31)
    assert not gate_passed([auc])


def test_an_attack_waiver_covers_only_that_attack() -> None:
    only_loss = {"condition": "auc", "attack": "loss", "reason": "r", "expires": "2030-01-01"}
    (auc, _) = evaluate_gate(failing_auc_gate(only_loss), FAILING, today=date(2025, 1, 1))
    assert not auc.waived and not auc.holds  # confidence (0.65) fails too, unwaived
    both = {"condition": "auc", "attack": "confidence", "reason": "r2", "expires": "2030-01-01"}
    (auc, _) = evaluate_gate(failing_auc_gate(only_loss, both), FAILING, today=date(2025, 1, 1))
    assert auc.waived and auc.waiver_reason == "r; r2"


def test_a_metric_name_waives_every_condition_on_it() -> None:
    spec = gate(
        max_tpr_at_fpr=[{"fpr": 0.05, "max": 0.05}],
        suppressions=[{"condition": "tpr_at_fpr", "reason": "r", "expires": "2030-01-01"}],
    )
    (condition,) = evaluate_gate(spec, FAILING, today=date(2025, 1, 1))
    assert condition.id == "tpr_at_fpr@0.05" and condition.waived


@pytest.mark.parametrize(
    ("suppression", "expected"),
    [
        ({"condition": "auc", "expires": "2030-01-01"}, "reason: required key is missing"),
        ({"condition": "auc", "reason": "r"}, "expires: required key is missing"),
        ({"condition": "auc", "reason": "  ", "expires": "2030-01-01"}, "must not be empty"),
        ({"condition": "max_auc", "reason": "r", "expires": "2030-01-01"}, "conditions: auc"),
        ({"condition": "auc", "attack": "lso", "reason": "r", "expires": "2030-01-01"}, "'lso'"),
        ({"condition": "auc", "reason": "r", "expires": "soon"}, "expires"),
    ],
)
def test_invalid_suppressions_are_policy_errors(suppression: dict[str, Any], expected: str) -> None:
    with pytest.raises(PolicyError) as error:
        parse(gate={"max_auc": 0.6, "suppressions": [suppression]})
    assert expected in str(error.value)


# --- reports --------------------------------------------------------------------------------


def report_conditions() -> list[Condition]:
    spec = gate(
        max_auc={"max": 0.6, "statistic": "upper"},
        max_advantage=0.05,
        suppressions=[
            {"condition": "auc", "reason": "known | <b>", "expires": "2030-01-01"},
            {"condition": "advantage", "reason": "lapsed", "expires": "2020-01-01"},
        ],
    )
    measured = {"loss": attack_metrics(0.58, (0.55, 0.63))}
    return evaluate_gate(spec, measured, today=date(2025, 1, 1))


def test_markdown_shows_intervals_waivers_and_baseline_deltas(tmp_path: Path) -> None:
    is_member, scores, labels = normal_audit(2, 300, 0.5)
    attack = scored(is_member, scores, labels)
    baseline = load_baseline(write_baseline(tmp_path / "r.json", {"loss": 0.5}))
    (increase,) = evaluate_gate(
        gate(max_auc_increase=0.2), {"loss": gate_metrics(attack)}, baseline=baseline
    )
    conditions = [*report_conditions(), increase]
    text = render_markdown(make_result(attacks=[attack], conditions=conditions)).decode()
    assert "0.6300 (point 0.5800, CI [0.5500, 0.6300])" in text
    assert "⚠️ waived until 2030-01-01: known &#124; &lt;b&gt;" in text
    assert "❌ fail (waiver expired 2020-01-01)" in text
    assert f"{increase.value:+.4f} (0.5000 → {attack.auc:.4f})" in text
    assert attack.auc_ci is not None and f"[{attack.auc_ci[0]:.3f}, {attack.auc_ci[1]:.3f}]" in text
    assert "ε lower bound" in text and "Slices for loss: correct" not in text  # no slices here
    assert "1 of 3 gate conditions hold, 1 failure waived" in text


def test_junit_waived_failure_is_a_passing_case_with_system_out() -> None:
    import xml.etree.ElementTree as ET


    waived, lapsed = report_conditions()
    suite = ET.fromstring(render_junit(make_result(conditions=[waived, lapsed])))
    assert suite.get("failures") == "1"
    first, second = suite.findall("testcase")
    assert first.find("failure") is None
    assert (first.findtext("system-out") or "").startswith("WAIVED until 2030-01-01: known | <b>")
    failure = second.find("failure")
    assert failure is not None and "waiver expired 2020-01-01" in (failure.get("message") or "")


# --- end to end -----------------------------------------------------------------------------




