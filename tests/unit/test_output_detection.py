"""Output kinds from the probe batch, checked on random inputs (hypothesis): softmax rows are
probabilities, argmax indices and one-hot rows are labels, anything else is logits; a declared
kind the probe contradicts is refused; probabilities read as log-probabilities give every
signal the logits give.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mia_audit.attacks import signals
from mia_audit.attacks.learned import logit_features
from mia_audit.errors import InputError, ModelError
from mia_audit.models.outputs import (
    LabelVectorClassifier,
    attack_inputs,
    check_outputs_hold,
    detect_output_kind,
    resolve_output_kind,
)

shapes = st.tuples(st.integers(1, 16), st.integers(2, 12))
seeds = st.integers(0, 2**32 - 1)
scales = st.floats(0.1, 20.0)


def random_logits(seed: int, shape: tuple[int, int], scale: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape) * scale + rng.normal() * 5).astype(np.float32)


def softmax32(logits: np.ndarray) -> np.ndarray:
    """A float32 softmax, as an exported softmax head computes it."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted, dtype=np.float32)
    probabilities: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return probabilities.astype(np.float32)


@settings(max_examples=200, deadline=None)
@given(seeds, shapes, scales)
def test_each_kind_is_detected(seed: int, shape: tuple[int, int], scale: float) -> None:
    logits = random_logits(seed, shape, scale)
    assert detect_output_kind(logits) == "logits"
    probabilities = softmax32(logits)
    one_hot = np.eye(shape[1], dtype=np.float32)[logits.argmax(axis=1)]
    if not np.array_equal(probabilities, one_hot):  # a fully saturated softmax is one-hot
        assert detect_output_kind(probabilities) == "probabilities"
    assert detect_output_kind(one_hot) == "labels"
    assert detect_output_kind(logits.argmax(axis=1).astype(np.float32)) == "labels"


@settings(max_examples=200, deadline=None)
@given(seeds, shapes, st.floats(0.1, 8.0))
def test_probabilities_read_as_log_probabilities_give_the_logits_signals(
    seed: int, shape: tuple[int, int], scale: float
) -> None:
    logits = random_logits(seed, shape, scale)
    labels = np.random.default_rng(seed).integers(0, shape[1], shape[0])
    read = attack_inputs("probabilities", softmax32(logits)[None])[0]
    for signal in (signals.scaled_logit, signals.hinge_margin, signals.modified_entropy):
        np.testing.assert_allclose(
            signal(read, labels), signal(logits, labels), rtol=1e-4, atol=1e-4
        )
    np.testing.assert_allclose(
        signals.cross_entropy(read, labels), signals.cross_entropy(logits, labels), rtol=1e-4
    )
    np.testing.assert_allclose(
        logit_features(read, labels), logit_features(logits, labels), rtol=1e-4, atol=1e-4
    )


def test_an_underflowed_probability_reads_as_the_floor_not_minus_infinity() -> None:
    read = attack_inputs("probabilities", np.array([[[1.0, 0.0]]], dtype=np.float32))
    assert np.isfinite(read).all() and read[0, 0, 1] < -100


def test_labels_read_as_the_predicted_class_one_hot() -> None:
    logits = np.array([[[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]]], dtype=np.float32)
    np.testing.assert_array_equal(attack_inputs("labels", logits)[0], [[0, 1, 0], [1, 0, 0]])


@pytest.mark.parametrize(
    ("declared", "outputs", "label_vector"),
    [
        ("logits", "probabilities", False),
        ("logits", "one_hot", False),
        ("logits", "indices", True),
        ("probabilities", "logits", False),
        ("probabilities", "indices", True),
    ],
)
def test_a_declared_kind_the_probe_contradicts_is_refused(
    declared: str, outputs: str, label_vector: bool
) -> None:
    probe = probe_outputs()[outputs]
    with pytest.raises(InputError, match=f"model.outputs: is {declared} but"):
        resolve_output_kind(declared, probe, label_vector)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("declared", "outputs", "kind"),
    [
        ("auto", "logits", "logits"),
        ("auto", "probabilities", "probabilities"),
        ("auto", "one_hot", "labels"),
        ("labels", "logits", "labels"),  # an attacker who sees only the label
        ("labels", "probabilities", "labels"),
        ("probabilities", "one_hot", "probabilities"),  # a saturated softmax
        ("logits", "logits", "logits"),
    ],
)
def test_compatible_declarations_are_kept(declared: str, outputs: str, kind: str) -> None:
    decision = resolve_output_kind(declared, probe_outputs()[outputs], False)  # type: ignore[arg-type]
    assert decision.kind == kind
    assert decision.note.startswith(f"model outputs: {'detected ' if declared == 'auto' else ''}")


def probe_outputs() -> dict[str, np.ndarray]:
    logits = random_logits(1, (8, 5), 3.0)
    return {
        "logits": logits,
        "probabilities": softmax32(logits),
        "one_hot": np.eye(5, dtype=np.float32)[logits.argmax(axis=1)],
        "indices": logits.argmax(axis=1).astype(np.float32),
    }


def test_the_kind_must_hold_on_every_audited_sample() -> None:
    outputs = probe_outputs()
    decision = resolve_output_kind("auto", outputs["probabilities"], False)
    check_outputs_hold(decision, outputs["probabilities"])
    mixed = np.concatenate([outputs["probabilities"], outputs["logits"][:1]])
    with pytest.raises(InputError, match="the probe batch looked like probabilities"):
        check_outputs_hold(decision, mixed)


class IndexModel:
    engine, device = "numpy", "cpu"
    fixed_batch_size: int | None = None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return batch.reshape(len(batch), -1)[:, 0].astype(np.float32)


def test_class_indices_become_one_hot_rows_and_out_of_range_ones_fail() -> None:
    classifier = LabelVectorClassifier(IndexModel(), 4)
    np.testing.assert_array_equal(
        classifier(np.array([[2.0], [0.0]])), [[0, 0, 1, 0], [1, 0, 0, 0]]
    )
    with pytest.raises(ModelError, match=r"returned class 4, outside 0\.\.3"):
        classifier(np.array([[4.0]]))
    with pytest.raises(ModelError, match="not class indices"):
        classifier(np.array([[0.5]]))
