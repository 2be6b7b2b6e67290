"""The scikit-learn attack classifiers that `learned` and `shadow` fit, built in one place.

Both attacks offer the same three kinds; they differ only in a few sizes, which each states as
its own `ClassifierSettings`. scikit-learn is imported when a classifier is built, so importing
an attack stays cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mia_audit.attacks.crossfit import stratified_folds

ClassifierKind = Literal["logistic_regression", "gradient_boosting", "mlp"]


@dataclass(frozen=True)
class ClassifierSettings:
    """Sizes of the classifiers (the defaults are `learned`'s)."""

    mlp_layers: tuple[int, ...] = (64, 32)
    mlp_max_iter: int = 300
    mlp_early_stopping: bool = True
    boosting_rounds: int = 200
    boosting_early_stopping: bool | Literal["auto"] = True


def make_classifier(
    kind: ClassifierKind, random_state: int, settings: ClassifierSettings = ClassifierSettings()
) -> Any:
    """An unfitted classifier with `fit` and `predict_proba`; features are standardised for
    the linear and neural models (boosted trees do not need it)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "logistic_regression":
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    if kind == "mlp":
        mlp = MLPClassifier(
            hidden_layer_sizes=settings.mlp_layers,
            alpha=1e-3,
            max_iter=settings.mlp_max_iter,
            early_stopping=settings.mlp_early_stopping,
            random_state=random_state,
        )
        return make_pipeline(StandardScaler(), mlp)
    return HistGradientBoostingClassifier(
        max_iter=settings.boosting_rounds,
        learning_rate=0.05,
        early_stopping=settings.boosting_early_stopping,
        random_state=random_state,
    )


#: Classifiers that hold out a stratified 10 % of their training set for early stopping.
_EARLY_STOPPING = frozenset({"gradient_boosting", "mlp"})
_EARLY_STOPPING_PER_SIDE = 6


def crossfit_samples_needed(kind: ClassifierKind, folds: int) -> int:
    """Members, and non-members, that a classifier cross-fitted over `folds` needs.

    The smallest training set keeps n - ceil(n / folds) of each side. Gradient boosting and the
    MLP hold out a stratified 10 % of it for early stopping, which needs two samples (one per
    class): at least 11 to train on, so 6 of each side.
    """
    if kind not in _EARLY_STOPPING:
        return folds
    needed = folds
    while needed - math.ceil(needed / folds) < _EARLY_STOPPING_PER_SIDE:
        needed += 1
    return needed


def out_of_fold_scores(
    features: np.ndarray, is_member: np.ndarray, kind: ClassifierKind, folds: int, random_state: int
) -> np.ndarray:
    """Each sample's membership probability from a classifier fitted on the other folds
    (stratified), so no sample is scored by a classifier that saw its label."""
    scores = np.empty(len(features))
    for fold, (train, test) in enumerate(stratified_folds(is_member, folds, random_state)):
        classifier = make_classifier(kind, random_state + fold)
        classifier.fit(features[train], is_member[train])
        scores[test] = classifier.predict_proba(features[test])[:, 1]
    return scores
