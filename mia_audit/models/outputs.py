"""What the target returns (logits, probabilities or labels), found from the probe batch, and
its outputs turned into the one form the attacks read.

`detect_output_kind` looks at the model's raw outputs on the probe batch: a vector of whole
numbers (an argmax head) or one-hot rows are labels; non-negative rows that sum to 1 are
probabilities (a softmax head); anything else is logits. `resolve_output_kind` checks a
declared `model.outputs` against that, and `check_outputs_hold` checks it again on every audited
sample, so a probe that happened to look like probabilities cannot pass a logits model off as
one (docs/model-outputs.md).

The attacks then read (`attack_inputs`): logits as they are; probabilities as log-probabilities
(logits up to a per-row constant, so every softmax-based signal and the reference attacks get
the same input they get from the logits export); labels as one-hot rows, which only the
label-only attacks accept (`mia_audit.attacks.outputs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from mia_audit.attacks.outputs import OutputKind
from mia_audit.errors import InputError, ModelError
from mia_audit.models.classifier import Classifier

DeclaredOutputs = Literal["auto", "logits", "probabilities", "labels"]

#: How far a row may sum from 1 and still read as probabilities (a float32 softmax is ~1e-7 off);
#: rows rounded to half precision get a tolerance of their own (`probability_tolerance`).
PROBABILITY_TOLERANCE = 1e-3
#: Machine epsilon of the half-precision formats a softmax head may round its rows to.
_FLOAT16_EPS = float(np.finfo(np.float16).eps)  # 2**-10
_BFLOAT16_EPS = 2.0**-7  # 8 significant bits
#: log of a probability that underflowed to 0 in the model's float32 softmax: the log of the
#: smallest positive float32, so such a class reads as "at most this likely", never as -inf.
LOG_PROBABILITY_FLOOR = float(np.log(np.finfo(np.float32).smallest_subnormal))


def is_label_vector(outputs: np.ndarray) -> bool:
    """One whole, non-negative number per image: the class indices an argmax head returns."""
    return bool(
        outputs.ndim == 1
        and np.isfinite(outputs).all()
        and (outputs >= 0).all()
        and (outputs == np.round(outputs)).all()
    )


def is_one_hot(outputs: np.ndarray) -> bool:
    """Rows of zeros with exactly one 1."""
    return bool(
        outputs.ndim == 2
        and outputs.shape[1] >= 2
        and np.isin(outputs, (0.0, 1.0)).all()
        and (outputs.sum(axis=1) == 1.0).all()
    )


def value_precision(outputs: np.ndarray) -> float:
    """Machine epsilon of the narrowest float format that holds every value exactly: float16
    or bfloat16 for a head that rounds its outputs to half precision (they arrive as float32:
    the classifiers widen them), else float32's."""
    values = np.asarray(outputs, dtype=np.float32)
    with np.errstate(over="ignore"):
        if np.array_equal(values.astype(np.float16).astype(np.float32), values):
            return _FLOAT16_EPS
    if not (np.ascontiguousarray(values).view(np.uint32) & 0xFFFF).any():
        return _BFLOAT16_EPS  # bfloat16 is float32 with the low 16 bits cut
    return float(np.finfo(np.float32).eps)


def probability_tolerance(outputs: np.ndarray) -> float:
    """How far a row of these outputs may sum from 1: PROBABILITY_TOLERANCE, or for rows
    rounded to half precision the format's epsilon times the number of classes (every one of
    the C entries, and the softmax's sum, rounded at that precision)."""
    classes = outputs.shape[-1] if outputs.ndim == 2 else 1
    return max(PROBABILITY_TOLERANCE, value_precision(outputs) * classes)


def is_probability_rows(outputs: np.ndarray) -> bool:
    """Rows of non-negative numbers that sum to 1 (within the rounding of their precision)."""
    rows = np.asarray(outputs, dtype=np.float64)
    return bool(
        rows.ndim == 2
        and rows.size > 0
        and np.isfinite(rows).all()
        and (rows >= 0).all()
        and np.allclose(rows.sum(axis=1), 1.0, rtol=0.0, atol=probability_tolerance(outputs))
    )


def detect_output_kind(outputs: np.ndarray) -> OutputKind:
    """The kind of a batch of raw model outputs (one-hot is checked before probabilities:
    a one-hot row also sums to 1)."""
    if is_label_vector(outputs) or is_one_hot(outputs):
        return "labels"
    if is_probability_rows(outputs):
        return "probabilities"
    return "logits"


@dataclass(frozen=True)
class OutputDecision:
    """The kind the attacks read, what the probe showed, and the note that says so."""

    kind: OutputKind
    detected: OutputKind
    declared: DeclaredOutputs
    note: str


#: Declared kinds a probe of each detected kind supports. `labels` may always be declared (the
#: audit then keeps only the predicted class: an attacker who sees the label); one-hot rows
#: are valid probabilities (a saturated softmax), so `probabilities` is accepted for them.
_COMPATIBLE: dict[OutputKind, frozenset[OutputKind]] = {
    "logits": frozenset({"logits", "labels"}),
    "probabilities": frozenset({"probabilities", "labels"}),
    "labels": frozenset({"labels", "probabilities"}),
}

_WHAT_PROBE_SHOWED: dict[OutputKind, str] = {
    "logits": "real-valued rows (logits)",
    "probabilities": "non-negative rows that sum to 1 (probabilities: a softmax head)",
    "labels": "class labels (class indices or one-hot rows: an argmax head)",
}


def resolve_output_kind(
    declared: DeclaredOutputs, probe_outputs: np.ndarray, label_vector: bool
) -> OutputDecision:
    """The kind to audit as: `declared`, unless it is `auto` (then what the probe shows).

    A declared kind the probe contradicts is exit 2: read as logits, probabilities would
    understate every signal; one-hot labels read as logits would be nonsense.
    """
    detected = detect_output_kind(probe_outputs)
    showed = _WHAT_PROBE_SHOWED[detected]
    if declared == "auto":
        note = f"model outputs: detected {detected} (the probe batch gave {showed})"
        if detected == "probabilities":
            note += "; the attacks read their logarithm, which ranks samples as the logits would"
        if detected == "labels":
            note += "; only label-only attacks can run"
        return OutputDecision(detected, detected, declared, note)
    if declared not in _COMPATIBLE[detected] or (declared == "probabilities" and label_vector):
        raise InputError(
            f"model.outputs: is {declared} but the model's outputs on the probe batch are "
            f"{showed}; set model.outputs: {detected} (or auto), or use the model that "
            f"returns {declared}"
        )
    note = f"model outputs: {declared} (declared; the probe batch gave {showed})"
    if declared == "labels" and detected != "labels":
        note += "; the attacks see only the predicted class, as an API that returns labels shows"
    return OutputDecision(declared, detected, declared, note)


def check_outputs_hold(decision: OutputDecision, identity_outputs: np.ndarray) -> None:
    """Every audited sample's raw outputs (identity view) are of the kind the probe found:
    a logits model whose few probe rows happened to sum to 1 must not be read as probabilities.
    """
    detected = decision.detected
    if detected == "logits":
        return
    holds = (
        is_probability_rows(identity_outputs)
        if detected == "probabilities"
        else is_one_hot(identity_outputs)
    )
    if not holds:
        raise InputError(
            f"model.outputs: the probe batch looked like {detected} but the model's outputs on "
            f"the audit set are not all {detected}; set model.outputs to what the model "
            "returns (logits, probabilities or labels)"
        )


def attack_inputs(kind: OutputKind, raw: np.ndarray) -> np.ndarray:
    """The target's raw outputs (views, n, C) as the attacks read them: logits unchanged,
    probabilities as log-probabilities, labels (or any outputs audited as labels) as the
    one-hot rows of the predicted class."""
    outputs = np.asarray(raw)
    if kind == "probabilities":
        with np.errstate(divide="ignore"):
            log_p = np.log(np.asarray(outputs, dtype=np.float64))
        return np.maximum(log_p, LOG_PROBABILITY_FLOOR).astype(np.float32)
    if kind == "labels":
        width = outputs.shape[-1]
        return np.asarray(np.eye(width, dtype=np.float32)[outputs.argmax(axis=-1)])
    return np.asarray(outputs)


@dataclass
class _WrappedClassifier:
    """A classifier that runs `inner` and changes what it returns; engine, device and fixed
    batch size are the inner model's (so precision and batching choices stay its own)."""

    inner: Classifier
    engine: str = field(init=False)
    device: str = field(init=False)
    fixed_batch_size: int | None = field(init=False)

    def __post_init__(self) -> None:
        self.engine = self.inner.engine
        self.device = self.inner.device
        self.fixed_batch_size = self.inner.fixed_batch_size


@dataclass
class LabelVectorClassifier(_WrappedClassifier):
    """A model that returns one class index per image, made to return one-hot rows of
    `num_classes` columns, so it flows through batched inference and the logits cache like any
    other model. An index outside 0..num_classes-1 is a model failure (exit 3)."""

    num_classes: int

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        indices = np.asarray(self.inner(batch))
        if indices.ndim == 2 and indices.shape[1] == 1:  # an (n, 1) column of indices
            indices = indices[:, 0]
        if not is_label_vector(indices):
            raise ModelError(
                f"the model returned outputs of shape {indices.shape} that are not class "
                "indices, where the probe batch gave one class index per image"
            )
        if indices.size and int(indices.max()) >= self.num_classes:
            raise ModelError(
                f"the model returned class {int(indices.max())}, outside 0..{self.num_classes - 1}"
                "; set model.num_classes to the number of classes the model predicts"
            )
        return np.eye(self.num_classes, dtype=np.float32)[indices.astype(np.int64)]


@dataclass
class AttackInputClassifier(_WrappedClassifier):
    """A model whose outputs come back as the attacks read them (`attack_inputs`): used for
    the target's outputs that other code computes (its outputs on the population, which RMIA
    compares with the reference models' logits)."""

    kind: OutputKind

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(attack_inputs(self.kind, self.inner(batch)))
