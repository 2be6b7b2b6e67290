"""The cache's integrity records, the spot check of cached logits, and the statistics that check
reference models against their plan: every damaged entry is a noted miss (never an exception,
never a silent use), a tampered entry with a consistent record is caught by behaviour, and the
Mann-Whitney test agrees with scipy."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from mia_audit.attacks.queries import IDENTITY, View
from mia_audit.errors import PolicyError
from mia_audit.models.classifier import TorchClassifier
from mia_audit.models.engine import EngineKey
from mia_audit.models.inference import LogitsRequest, Preprocessor, cached_predict, predict
from mia_audit.models.spot_check import (
    CPU_FP32_TOLERANCE,
    GPU_FP32_TOLERANCE,
    HALF_TOLERANCE,
    disagreement,
    implausible,
    relative_tolerance,
    secret_rows,
)
from mia_audit.references.fit import (
    FIT_SHORTFALL,
    HIDDEN_ALPHA,
    PLAN_ALPHA,
    ModelFit,
    assess_reference_fit,
    mann_whitney_less,
    model_fit,
    plan_problem,
    plan_rows,
    sample,
)
from mia_audit.references.settings import TrainingRecipe
from mia_audit.result import Accuracy
from mia_audit.store.cache import CACHE_FORMAT, entry_key, logits_store, model_store, record_path

KEY = "ab" * 32
Damage = Callable[[Path], None]


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) * 2 // 3] ^= 0x10
    path.write_bytes(bytes(data))


def drop_record(path: Path) -> None:
    record_path(path).unlink()


def garble_record(path: Path) -> None:
    record_path(path).write_text("{not json")


def record_of_another_key(path: Path) -> None:
    record = json.loads(record_path(path).read_text())
    record_path(path).write_text(json.dumps({**record, "key": "cd" * 32}))


#: Damage and the reason the note gives for it.
DAMAGE: dict[str, tuple[Damage, str]] = {
    "truncated": (truncate, "does not match its integrity record"),
    "bit-flipped": (flip_a_bit, "does not match its integrity record"),
    "no record": (drop_record, "has no integrity record"),
    "garbled record": (garble_record, "has an unreadable integrity record"),
    "record of another entry": (record_of_another_key, "belongs to another entry"),
}


# --- the logits store ------------------------------------------------------------------------


def test_array_round_trip_writes_a_record(tmp_path: Path) -> None:
    cache = logits_store(tmp_path)
    value = np.arange(12, dtype=np.float32).reshape(3, 4)
    cache.put(KEY, value)
    record = json.loads(record_path(cache.path(KEY)).read_text())
    assert record["key"] == KEY and record["format"] == CACHE_FORMAT
    assert record["shape"] == [3, 4] and record["dtype"] == "<f4"
    np.testing.assert_array_equal(cache.get(KEY), value)
    assert (cache.hits, cache.misses, cache.refused) == (1, 0, [])


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_array_is_a_noted_miss_and_is_replaced(tmp_path: Path, damage: str) -> None:
    notes: list[str] = []
    cache = logits_store(tmp_path, notify=notes.append)
    value = np.random.default_rng(0).normal(size=(50, 10)).astype(np.float32)
    cache.put(KEY, value)
    harm, reason = DAMAGE[damage]
    harm(cache.path(KEY))
    assert cache.get(KEY, "the test's logits") is None
    assert len(notes) == 1 and notes[0].startswith("cache: the test's logits ")
    assert reason in notes[0] and "not used, recomputed" in notes[0]
    assert not cache.path(KEY).exists()  # removed, so it cannot fail a later run
    cache.put(KEY, value)
    np.testing.assert_array_equal(cache.get(KEY), value)
    assert len(notes) == 1


def test_array_whose_record_lies_about_its_shape_is_refused(tmp_path: Path) -> None:
    cache = logits_store(tmp_path)
    cache.put(KEY, np.zeros((4, 2), np.float32))
    path = record_path(cache.path(KEY))
    path.write_text(json.dumps({**json.loads(path.read_text()), "shape": [2, 4]}))
    assert cache.get(KEY) is None
    assert "shape or dtype" in cache.refused[0]


def test_a_record_without_its_array_is_a_silent_miss(tmp_path: Path) -> None:
    """What an interrupted write leaves (the record is written first)."""
    cache = logits_store(tmp_path)
    cache.put(KEY, np.zeros((2, 2), np.float32))
    cache.path(KEY).unlink()
    assert cache.get(KEY) is None and cache.refused == [] and cache.misses == 1


def test_no_root_caches_nothing(tmp_path: Path) -> None:
    cache = logits_store(None)
    cache.put(KEY, np.zeros(3))
    assert cache.get(KEY) is None


# --- the model store -------------------------------------------------------------------------


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_model_is_a_noted_miss(tmp_path: Path, damage: str) -> None:
    notes: list[str] = []
    models = model_store(tmp_path, notify=notes.append)
    models.put(KEY, {"weight": torch.randn(64, 64), "bias": torch.zeros(64)})
    harm, reason = DAMAGE[damage]
    harm(models.path(KEY))
    assert models.get(KEY) is None
    assert len(notes) == 1 and reason in notes[0] and "not used, retrained" in notes[0]
    assert KEY not in models


def test_a_consistent_record_of_something_not_a_state_dict_is_refused(tmp_path: Path) -> None:
    models = model_store(tmp_path)
    models.put(KEY, [torch.zeros(2)])  # type: ignore[arg-type]
    assert models.get(KEY) is None and "is not a state dict" in models.refused[0]


# --- the spot check -----------------------------------------------------------------------------


def test_secret_rows_are_distinct_sorted_and_unpredictable() -> None:
    draws = [secret_rows(1000, 128) for _ in range(5)]
    for rows in draws:
        assert len(rows) == 128 and len(set(rows.tolist())) == 128
        assert (np.diff(rows) > 0).all() and rows.min() >= 0 and rows.max() < 1000
    assert len({tuple(rows) for rows in draws}) == 5
    np.testing.assert_array_equal(secret_rows(7, 128), np.arange(7))


@pytest.mark.parametrize(
    ("engine", "tolerance"),
    [
        (EngineKey("torch", "cpu"), CPU_FP32_TOLERANCE),
        (EngineKey("onnxruntime", "cpu"), CPU_FP32_TOLERANCE),
        (EngineKey("torch", "cuda"), GPU_FP32_TOLERANCE),
        (EngineKey("onnxruntime", "cuda"), GPU_FP32_TOLERANCE),
        (EngineKey("torch", "cuda", "bfloat16"), HALF_TOLERANCE),
        (EngineKey("torch", "cuda", "float16"), HALF_TOLERANCE),
    ],
)
def test_tolerance_fits_the_engine(engine: EngineKey, tolerance: float) -> None:
    assert relative_tolerance(engine) == tolerance


def test_the_engine_key_reads_as_before_in_cache_keys() -> None:
    assert str(EngineKey("torch", "cuda", "bfloat16")) == "torch:cuda:bfloat16"
    assert str(EngineKey("onnxruntime", "cpu")) == "onnxruntime:cpu:fp32"


def test_disagreement_catches_rows_shuffled_within_a_class() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, size=(128, 10)).astype(np.float32)
    assert disagreement(logits, logits + 1e-6, CPU_FP32_TOLERANCE) is None
    shuffled = logits[rng.permutation(128)]
    reason = disagreement(shuffled, logits, CPU_FP32_TOLERANCE)
    assert reason is not None and reason.startswith("disagrees with the model on 12")
    nan = logits.copy()
    nan[3, 2] = np.nan
    assert "on 1 of 128" in str(disagreement(nan, logits, HALF_TOLERANCE))
    assert "shape" in str(disagreement(logits[:, :5], logits, HALF_TOLERANCE))


def test_implausible_logits() -> None:
    good = np.zeros((5, 3), np.float32)
    assert implausible(good, 5, None) is None and implausible(good, 5, 3) is None
    assert "shape" in str(implausible(good, 6, None))
    assert "where the other views hold 4" in str(implausible(good, 5, 4))
    assert "float64" in str(implausible(good.astype(np.float64), 5, None))
    bad = good.copy()
    bad[0, 0] = np.inf
    assert "NaN or infinite" in str(implausible(bad, 5, None))


@pytest.fixture(scope="module")
def tiny_model() -> TorchClassifier:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    return TorchClassifier(module, "cpu")


def test_cached_predict_refuses_shuffled_logits_and_returns_the_models(
    tmp_path: Path, tiny_model: TorchClassifier
) -> None:
    images = np.random.default_rng(1).integers(0, 256, (300, 3, 8, 8), dtype=np.uint8)
    views = (IDENTITY, View(mirror=True))
    request = LogitsRequest(
        "m", "d", Preprocessor((0.5,) * 3, (0.25,) * 3), EngineKey("torch", "cpu")
    )
    notes: list[str] = []
    cache = logits_store(tmp_path, notify=notes.append)
    honest = cached_predict(cache, request, tiny_model, images, views, 64)
    again = cached_predict(cache, request, tiny_model, images, views, 64, what="x")
    np.testing.assert_array_equal(again, honest)  # an honest cache changes nothing
    assert notes == []
    key = entry_key("logits", request.key_parts(IDENTITY))
    cache.put(key, honest[0][np.random.default_rng(2).permutation(300)])
    checked = cached_predict(cache, request, tiny_model, images, views, 64, what="the logits")
    np.testing.assert_array_equal(checked, honest)
    assert len(notes) == 1
    assert notes[0].startswith("cache: the logits (view identity) disagrees with the model on")
    assert "of 128 re-computed samples" in notes[0]
    np.testing.assert_array_equal(cache.get(key), honest[0])  # overwritten


def test_cached_predict_refuses_an_array_of_the_wrong_shape(
    tmp_path: Path, tiny_model: TorchClassifier
) -> None:
    images = np.zeros((20, 3, 8, 8), np.uint8)
    request = LogitsRequest(
        "m", "d", Preprocessor((0.5,) * 3, (0.25,) * 3), EngineKey("torch", "cpu")
    )
    cache = logits_store(tmp_path)
    cache.put(entry_key("logits", request.key_parts(IDENTITY)), np.zeros((19, 4)))
    logits = cached_predict(cache, request, tiny_model, images, [IDENTITY], 8)
    expected = predict(tiny_model, images, [IDENTITY], request.preprocess, 8)
    np.testing.assert_array_equal(logits, expected)
    assert "holds an array of shape (19, 4)" in cache.refused[0]


# --- the plan check: statistics -----------------------------------------------------------------

samples = st.lists(st.integers(-5, 5) | st.floats(-3, 3), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(samples, samples)
def test_mann_whitney_matches_scipy(x: list[float], y: list[float]) -> None:
    expected = mannwhitneyu(x, y, alternative="less", method="asymptotic").pvalue
    assert mann_whitney_less(np.array(x), np.array(y)) == pytest.approx(expected, abs=1e-12)


def test_mann_whitney_detects_a_fitted_model_and_not_chance() -> None:
    rng = np.random.default_rng(0)
    assert mann_whitney_less(rng.exponential(0.2, 256), rng.exponential(1.0, 256)) < 1e-10
    chance = [mann_whitney_less(rng.normal(size=200), rng.normal(size=200)) for _ in range(400)]
    assert abs(np.mean(np.array(chance) < PLAN_ALPHA) - PLAN_ALPHA) < 0.02  # ~uniform p
    with pytest.raises(ValueError, match="at least one value"):
        mann_whitney_less(np.array([]), np.array([1.0]))


def test_plan_rows_compare_in_with_the_rest_of_the_pool() -> None:
    in_audit = np.array([True, False, True, False])
    in_population = np.array([False, True, False, False, False])
    pool = np.array([0, 1, 2, 3, 4, 5])  # the audit set and population rows 0 and 1
    in_rows, out_rows = plan_rows(in_audit, in_population, pool)
    np.testing.assert_array_equal(in_rows, [0, 2, 5])
    np.testing.assert_array_equal(out_rows, [1, 3, 4])  # not 6..8: outside the pool
    everything = np.ones(5, bool)
    _, outside = plan_rows(np.zeros(4, bool), everything, np.arange(4, 9))
    np.testing.assert_array_equal(outside, [0, 1, 2, 3])  # the whole pool IN: the rest is OUT


def test_sample_draws_distinct_rows_and_never_a_negative_count() -> None:
    rng = np.random.default_rng(0)
    rows = np.arange(10, 30)
    drawn = sample(rows, 5, rng)
    assert len(set(drawn.tolist())) == 5 and set(drawn.tolist()) <= set(rows.tolist())
    assert len(sample(rows, -3, rng)) == 0 and len(sample(rows, 99, rng)) == 20


def test_model_fit_counts_accuracy_on_each_side() -> None:
    labels = np.array([0, 1, 2, 0])
    confident = np.eye(3, dtype=np.float32)[labels] * 10
    wrong = np.eye(3, dtype=np.float32)[(labels + 1) % 3] * 10
    fit = model_fit(confident, labels, np.concatenate([confident[:1], wrong[1:]]), labels)
    assert fit.train_accuracy == 1.0 and fit.held_out_accuracy == 0.25
    assert (fit.n_train, fit.n_held_out) == (4, 4)
    assert 0 < fit.p_value < 0.1


@pytest.mark.parametrize(
    ("p_value", "hidden", "problem"),
    [
        (1e-6, None, None),
        (1e-6, 0.5, None),
        (PLAN_ALPHA, None, "does not fit its own training samples better than held-out ones"),
        (0.9, 1e-9, "does not fit its own training samples"),
        (1e-6, HIDDEN_ALPHA / 2, "fits samples its plan holds out"),
    ],
)
def test_plan_problem(p_value: float, hidden: float | None, problem: str | None) -> None:
    fit = ModelFit(1.0, 0.8, 100, 100, p_value)
    found = plan_problem(fit, hidden)
    assert (found is None) if problem is None else (found is not None and problem in found)


# --- the reference models against the target --------------------------------------------------


def fitted(train: float) -> tuple[tuple[str, object], ...]:
    fit = model_fit(
        np.eye(2, dtype=np.float32)[[0] * 100] * 5,
        np.array([0] * int(100 * train) + [1] * (100 - int(100 * train))),
        np.eye(2, dtype=np.float32)[[0] * 100],
        np.array([0] * 50 + [1] * 50),
    )
    return ((f"{int(train * 100):02d}" * 32, fit),)


@pytest.mark.parametrize(("train", "warns"), [(0.89, True), (0.91, False), (1.0, False)])
def test_the_recipe_warning_fires_below_the_targets_fit(train: float, warns: bool) -> None:
    notes: list[str] = []
    recipe = TrainingRecipe(epochs=3, lr=0.05)
    fit = assess_reference_fit(
        lambda mode, count: fitted(train),  # type: ignore[arg-type,return-value]
        [("lira", "online", 2)],
        Accuracy(members=1.0, non_members=0.8),
        recipe,
        "warn",
        notes.append,
    )
    assert fit.reproduces_target is not warns and fit.max_shortfall == FIT_SHORTFALL
    assert fit.sets[0].attacks == ["lira"] and fit.train == pytest.approx(train)
    if not warns:
        assert notes == []
        return
    assert len(notes) == 1 and notes[0].startswith("reference_training: ")
    assert "reference_training.epochs (now 3)" in notes[0] and "lr (now 0.05)" in notes[0]
    with pytest.raises(PolicyError, match=r"preconditions\.reference_fit: error"):
        assess_reference_fit(
            lambda mode, count: fitted(train),  # type: ignore[arg-type,return-value]
            [("lira", "online", 2)],
            Accuracy(members=1.0, non_members=0.8),
            recipe,
            "error",
            notes.append,
        )


# --- the policy switch --------------------------------------------------------------------------


def test_preconditions_reference_fit_is_warn_by_default_and_checked() -> None:
    from mia_audit.policy.loading import parse_policy

    minimal = {
        "version": 1,
        "name": "p",
        "model": {"path": "m.onnx"},
        "data": {"members": "a.npz", "non_members": "b.npz"},
        "preprocessing": "none",
        "attacks": ["loss"],
        "gate": {"max_auc": 0.6},
    }
    assert parse_policy(minimal, base_dir=Path("/")).preconditions.reference_fit == "warn"
    strict = parse_policy(
        {**minimal, "preconditions": {"reference_fit": "error"}}, base_dir=Path("/")
    )
    assert strict.preconditions.reference_fit == "error"
    with pytest.raises(PolicyError, match=r"preconditions\.reference_fit: input should be"):
        parse_policy({**minimal, "preconditions": {"reference_fit": "fail"}}, base_dir=Path("/"))
    with pytest.raises(PolicyError, match=r"unknown key 'refrence_fit' \(did you mean"):
        parse_policy({**minimal, "preconditions": {"refrence_fit": "warn"}}, base_dir=Path("/"))
