"""Label queries on the target: new images in, predicted classes out (`LabelOracle`).

The label-only attacks that perturb images (`boundary_distance`) ask through this and nothing
else, so they see what an API that returns labels shows. Images are the audit set's, on the
0..1 scale before the policy's preprocessing, which the oracle applies to every query batch;
queries run in batches of `runtime.batch_size` (halved on out-of-memory like all inference).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mia_audit.attacks.queries import IDENTITY
from mia_audit.data.images import as_float01
from mia_audit.models.classifier import Classifier
from mia_audit.models.inference import Preprocessor, predict


@dataclass
class ClassifierOracle:
    """The target as a `mia_audit.attacks.outputs.LabelOracle`."""

    classifier: Classifier
    preprocess: Preprocessor
    audit_images: np.ndarray
    batch_size: int
    _queries: int = field(default=0, init=False)

    @property
    def queries(self) -> int:
        return self._queries

    def images(self, rows: np.ndarray) -> np.ndarray:
        return as_float01(self.audit_images[rows])

    def predict(self, images: np.ndarray) -> np.ndarray:
        outputs = predict(self.classifier, images, [IDENTITY], self.preprocess, self.batch_size)
        self._queries += len(images)
        return np.asarray(outputs[0].argmax(axis=-1), dtype=np.int64)
