"""What an attack can read from the target: the kind of its outputs, and label queries.

A model returns logits, probabilities (a softmax head) or only the predicted class (an argmax
head, or an API that shows labels). The audit finds out which (`mia_audit.models.outputs`) and
hands the attacks the target's outputs in one form: logits, or log-probabilities for a
probabilities model (a valid set of logits up to a per-row constant, so every softmax-based
signal is unchanged), or, for a labels model, only the predicted classes. Each attack says which
kinds it can use (`Attack.output_kinds`); the audit refuses an attack the target cannot feed
before running it, rather than letting it read one-hot labels as logits.

`LabelOracle` is the one way an attack queries the target with new images; it answers with the
predicted class only, so an attack that uses it is label-only by construction.
"""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np

OutputKind = Literal["logits", "probabilities", "labels"]
OUTPUT_KINDS: tuple[OutputKind, ...] = ("logits", "probabilities", "labels")
#: What target-output attacks read unless they say otherwise.
SCORE_KINDS: frozenset[OutputKind] = frozenset({"logits", "probabilities"})
#: Every kind: attacks that use only the predicted class.
ANY_KIND: frozenset[OutputKind] = frozenset(OUTPUT_KINDS)


class LabelOracle(Protocol):
    """Label-only query access to the target, on images of the audit set's own geometry.

    Images are float32 (n, C, H, W) on the 0..1 pixel scale (before the policy's
    preprocessing, which the oracle applies). `queries` counts every image predicted so far.
    """

    @property
    def queries(self) -> int: ...

    def images(self, rows: np.ndarray) -> np.ndarray:
        """The audit samples `rows` as float32 (n, C, H, W) in 0..1."""
        ...

    def predict(self, images: np.ndarray) -> np.ndarray:
        """The target's predicted class of every image, int64 (n,)."""
        ...
