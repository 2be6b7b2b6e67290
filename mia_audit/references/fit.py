"""Whether reference models are what they claim to be, and whether they resemble the target.

Both questions are answered from one measurement: a reference model's loss and accuracy on the
samples it trained on (IN, by its plan) against those on samples it did not train on (OUT: the
rest of its plan's pool, see `plan_rows`). The samples are every one whose logits the audit
computed anyway (the audit set; the population when an attack needs it), topped up to
`SIDE_ROWS` per side with samples run through the model.

* **Does it fit its plan?** Its loss on IN samples must be lower than on OUT samples (one-sided
  Mann-Whitney U test, p < `PLAN_ALPHA`). A model file in another model's slot (swapped or
  stale files; a cache restored from an untrusted writer) fails: its training set is unrelated
  to the slot's plan (offline) or mostly its complement (online). A cached model that fails is
  refused and retrained (`mia_audit.references.provider`). A freshly trained model that fails is no
  tampering: the recipe does not make models remember their training samples, and then no
  cached copy can be told from a swapped one, so each run retrains them (and says so).
* **Does it fit like the target?** Reference attacks (LiRA, RMIA, shadow models) are only as
  strong as the models' likeness to the target: a recipe that is too short leaves them weaker
  than the plain loss attack. `fit_warning` compares the reference models' mean accuracy on
  their own training samples with the target's accuracy on its members (rule: more than
  `FIT_SHORTFALL` below is a warning, naming the recipe field to change; the policy's
  `preconditions.reference_fit: error` turns it into exit 2).

The top-up samples are seeded by the model's key, so the figures in result.json and the plan
check are the same in every run. Because whoever
wrote the cache could compute those samples too, a cached model is also checked on OUT samples
drawn from the OS's randomness: it must not fit them better than the seeded ones
(`HIDDEN_ALPHA`), or it was trained on samples its plan holds out. The logits at hand are the
model's own: computed from its weights, or cached and spot-checked against them
(`mia_audit.models.spot_check`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from mia_audit.attacks import signals
from mia_audit.attacks.reference_sets import Mode
from mia_audit.errors import PolicyError
from mia_audit.references.calibration import mean_confidence
from mia_audit.references.settings import TrainingRecipe
from mia_audit.result import Accuracy, ReferenceFit, ReferenceModelFit, ReferenceSetFit

#: The fewest IN and OUT samples (each) behind a model's figures and plan check, where the
#: model has that many (at 256 + 256, a model whose loss tells IN from OUT with an AUC of 0.6
#: fits its plan at p < 0.001).
SIDE_ROWS = 256
#: A model fits its plan when the one-sided Mann-Whitney p-value (IN loss < OUT loss) is below
#: this: a model in the wrong slot passes the check with about this probability.
PLAN_ALPHA = 0.01
#: A cached model is refused as trained on held-out samples when those drawn from the OS's
#: randomness fit better than the seeded ones at this p-value (an honest model: 1 check in
#: 10,000, so an audit with 64 cached models retrains one needlessly in 1 run of 150).
HIDDEN_ALPHA = 1e-4
#: The recipe reproduces the target's fit unless the reference models' mean training accuracy
#: is more than this below the target's accuracy on its members.
FIT_SHORTFALL = 0.10


def mann_whitney_less(x: np.ndarray, y: np.ndarray) -> float:
    """One-sided p-value of the Mann-Whitney U test that `x` tends to be smaller than `y`.

    Normal approximation with the tie correction and the continuity correction (what
    ``scipy.stats.mannwhitneyu(x, y, alternative="less", method="asymptotic")`` computes).
    When every value ties there is no evidence either way: 1.0.
    """
    from scipy.special import ndtr
    from scipy.stats import rankdata

    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("the Mann-Whitney test needs at least one value on each side")
    pooled = np.concatenate([x, y])
    u1 = float(rankdata(pooled)[:n1].sum()) - n1 * (n1 + 1) / 2
    u2 = n1 * n2 - u1
    n = n1 + n2
    _, counts = np.unique(pooled, return_counts=True)
    ties = float((counts.astype(np.float64) ** 3 - counts).sum())
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:
        return 1.0
    z = (u2 - n1 * n2 / 2 - 0.5) / np.sqrt(variance)
    return float(ndtr(-z))


@dataclass(frozen=True)
class ModelFit:
    """One reference model on samples it trained on (IN) and samples it did not (OUT)."""

    train_accuracy: float
    held_out_accuracy: float
    n_train: int
    n_held_out: int
    #: One-sided Mann-Whitney p-value that its IN loss is lower than its OUT loss.
    p_value: float
    #: Mean confidence in the true class on each side, on LiRA's log-odds scale
    #: (`mia_audit.references.calibration.mean_confidence`; the calibration pilot reads them).
    train_confidence: float = float("nan")
    held_out_confidence: float = float("nan")

    @property
    def fits_plan(self) -> bool:
        return self.p_value < PLAN_ALPHA


def per_sample_loss(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy of each row of (n, C) logits against its label (float64)."""
    return np.asarray(-signals.log_softmax(logits)[np.arange(len(labels)), labels])


def model_fit(
    logits_in: np.ndarray, labels_in: np.ndarray, logits_out: np.ndarray, labels_out: np.ndarray
) -> ModelFit:
    """Accuracy on each side and the plan test, from (n, C) logits and their labels."""
    loss_in = per_sample_loss(logits_in, labels_in)
    loss_out = per_sample_loss(logits_out, labels_out)
    return ModelFit(
        train_accuracy=float((np.argmax(logits_in, axis=-1) == labels_in).mean()),
        held_out_accuracy=float((np.argmax(logits_out, axis=-1) == labels_out).mean()),
        n_train=len(labels_in),
        n_held_out=len(labels_out),
        p_value=mann_whitney_less(loss_in, loss_out),
        train_confidence=mean_confidence(logits_in, labels_in),
        held_out_confidence=mean_confidence(logits_out, labels_out),
    )


def plan_problem(fit: ModelFit, hidden_p_value: float | None) -> str | None:
    """Why a cached model is not the model its plan describes, or None.

    `hidden_p_value` is the p-value that it fits OUT samples drawn from the OS's randomness
    better than the seeded OUT samples of `fit` (None when no OUT samples were left to draw).
    """
    if not fit.fits_plan:
        return (
            "does not fit its own training samples better than held-out ones (one-sided "
            f"Mann-Whitney p = {fit.p_value:.2g} on {fit.n_train} + {fit.n_held_out} samples): "
            "not the model its plan describes (a swapped or stale file, or a recipe that does "
            "not fit)"
        )
    if hidden_p_value is not None and hidden_p_value < HIDDEN_ALPHA:
        return (
            "fits samples its plan holds out, drawn at random, better than the held-out samples "
            f"it was measured on (one-sided Mann-Whitney p = {hidden_p_value:.2g}): trained on "
            "more than its plan says"
        )
    return None


def plan_rows(
    in_audit: np.ndarray, in_population: np.ndarray, pool: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A model's IN rows and OUT rows, as indices into the audit set followed by the
    population.

    OUT rows are the rest of its plan's pool (the rows the plan's models draw their training
    samples from): a model of another slot of the same plan then fits IN no better than OUT
    (rows outside the pool, which no model of the plan trains on, would make any of them look
    fitted). Only when the model trains on the whole pool are the rows outside it OUT.
    """
    trained = np.concatenate([in_audit, in_population]).astype(bool)
    in_rows = np.flatnonzero(trained)
    out_rows = np.setdiff1d(pool, in_rows)
    return in_rows, out_rows if len(out_rows) else np.flatnonzero(~trained)


def seeded_generator(model_key: str) -> np.random.Generator:
    """The figures' top-up sample: fixed by the model's key (hex), whatever the run."""
    return np.random.default_rng(int(model_key[:16], 16))


def secret_generator() -> np.random.Generator:
    """A cached model's plan-check top-up sample: from the OS's randomness, unknown to whoever
    wrote the cache."""
    return np.random.default_rng(secrets.randbits(128))


def sample(rows: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Up to `count` (at least 0) distinct entries of `rows`, sorted."""
    size = max(0, min(count, len(rows)))
    return np.sort(rng.choice(rows, size=size, replace=False)) if size else rows[:0]


# --- the reference models against the target ----------------------------------------------------


@dataclass(frozen=True)
class ReferenceGroupFit:
    """One set of reference models (mode, count) as the attacks use it, with each model's fit."""

    mode: Mode
    count: int
    attacks: tuple[str, ...]
    models: tuple[tuple[str, ModelFit], ...]


def reference_fit(groups: Sequence[ReferenceGroupFit], target: Accuracy) -> ReferenceFit:
    """The result.json record: per set and per model, and the mean over distinct models."""
    distinct = {key: fit for group in groups for key, fit in group.models}
    train = _mean(fit.train_accuracy for fit in distinct.values())
    return ReferenceFit(
        target_members=target.members,
        target_non_members=target.non_members,
        train=train,
        held_out=_mean(fit.held_out_accuracy for fit in distinct.values()),
        max_shortfall=FIT_SHORTFALL,
        reproduces_target=train >= target.members - FIT_SHORTFALL,
        sets=[_set_fit(group) for group in groups],
    )


def _set_fit(group: ReferenceGroupFit) -> ReferenceSetFit:
    return ReferenceSetFit(
        mode=group.mode,
        count=group.count,
        attacks=list(group.attacks),
        train=_mean(fit.train_accuracy for _, fit in group.models),
        held_out=_mean(fit.held_out_accuracy for _, fit in group.models),
        models=[
            ReferenceModelFit(
                key=key,
                train=fit.train_accuracy,
                held_out=fit.held_out_accuracy,
                n_train=fit.n_train,
                n_held_out=fit.n_held_out,
            )
            for key, fit in group.models
        ],
    )


def _mean(values: Iterable[float]) -> float:
    array = np.fromiter(values, dtype=np.float64)
    return float(array.mean()) if len(array) else float("nan")


def fit_warning(fit: ReferenceFit, recipe: TrainingRecipe) -> str | None:
    """The warning when the recipe clearly fails to reproduce the target's fit, else None."""
    if fit.reproduces_target:
        return None
    attacks = sorted({attack for group in fit.sets for attack in group.attacks})
    return (
        "reference_training: the reference models fit their own training samples far less "
        f"than the target fits its members (training accuracy {fit.train:.3f} vs "
        f"{fit.target_members:.3f}, more than {FIT_SHORTFALL:g} below), so the reference "
        f"attacks ({', '.join(attacks)}) understate the risk; train them like the target: raise "
        f"reference_training.epochs (now {recipe.epochs}) or match the target's lr "
        f"(now {recipe.lr:g}), weight_decay (now {recipe.weight_decay:g}) and augment "
        f"(now {list(recipe.augment)})"
    )


def unverifiable_note(count: int, total: int) -> str:
    """The note when freshly trained models do not fit their own plan."""
    return (
        f"reference models: {count} of {total} freshly trained models do not fit their own "
        "training samples better than held-out ones, so their cached copies cannot be told "
        "from swapped ones and are retrained on every run; a recipe closer to the target's "
        "(reference_training.epochs, lr, weight_decay, augment) fixes both"
    )


SetFits = Callable[[Mode, int], tuple[tuple[str, ModelFit], ...]]


def assess_reference_fit(
    set_fits: SetFits,
    used_by: Sequence[tuple[str, Mode, int]],
    target: Accuracy,
    recipe: TrainingRecipe,
    on_failure: str,
    notify: Callable[[str], None],
) -> ReferenceFit:
    """The reference models' fit beside the target's, for result.json; warn (`notify`) or
    raise PolicyError (exit 2, when `on_failure` is "error") when the recipe clearly fails to
    reproduce the target's fit.

    `used_by` lists (attack id, mode, count) of every reference attack; `set_fits(mode, count)`
    gives the fits of a prepared set.
    """
    attacks: dict[tuple[Mode, int], list[str]] = {}
    for attack, mode, count in used_by:
        attacks.setdefault((mode, count), []).append(attack)
    groups = [
        ReferenceGroupFit(mode, count, tuple(names), set_fits(mode, count))
        for (mode, count), names in attacks.items()
    ]
    fit = reference_fit(groups, target)
    message = fit_warning(fit, recipe)
    if message is not None:
        if on_failure == "error":
            raise PolicyError(
                f"{message}; preconditions.reference_fit: error stops the audit here "
                "(warn lets it run with this warning)"
            )
        notify(message)
    return fit
