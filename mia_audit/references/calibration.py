"""The calibration pilot's search (pure): which recipe's reference models fit like the target.

Reference attacks are only as strong as the reference models' likeness to the target, and the
person running the gate often does not know the target's recipe. The knobs that decide how a
model fits are its length (`epochs`) and its regularisation (`augment`, `weight_decay`); the
pilot trains one model per candidate recipe (the run's first reference model, so a candidate
that matches is kept) and compares four figures with the target's (`FitFigures`): accuracy on
its training samples against the target's on members, on held-out samples against the target's
on non-members, and the mean probability of the true class on each side. The last two are the
loss distribution on accuracy's 0..1 scale: an overfit target is 100 % accurate on its members
after 20 epochs and after 40, but LiRA reads how confident it is, and that keeps rising.

The search is a coordinate walk over the grid (`CandidateGrid`), from the grid point nearest
the policy's recipe: a candidate that fits its training samples too little trains longer or
with less regularisation, one whose gap between training and held-out figures is too large
gets more regularisation, and so on (`wanted_moves`). It stops at the first candidate within
the tolerance, when the budget (`max_models`) is spent, or when every move it wants is tried or
off the grid; the best candidate (smallest `distance`) is chosen. Everything here is
deterministic: the same figures give the same walk.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from mia_audit.attacks import signals
from mia_audit.references.settings import Augmentation, CalibrationGrid, TrainingRecipe

#: A grid point: indices into (epochs, weight decays, augmentations).
Position = tuple[int, int, int]
#: Why the walk stopped: a match, the budget spent, or every wanted move tried or off the grid.
Stop = Literal["matched", "budget", "exhausted"]


@dataclass(frozen=True)
class FitFigures:
    """How a model fits: accuracy and mean true-class probability on the samples it trained on
    (for the target: its members) and on samples it did not (non-members)."""

    train_accuracy: float
    held_out_accuracy: float
    train_confidence: float
    held_out_confidence: float

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (
            self.train_accuracy,
            self.held_out_accuracy,
            self.train_confidence,
            self.held_out_confidence,
        )


def mean_confidence(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean softmax probability of each row's label (float64; 0 rows: NaN)."""
    if not len(labels):
        return float("nan")
    log_p = signals.log_softmax(np.asarray(logits, dtype=np.float64))
    return float(np.exp(log_p[np.arange(len(labels)), labels]).mean())


def figures_of(
    logits_in: np.ndarray, labels_in: np.ndarray, logits_out: np.ndarray, labels_out: np.ndarray
) -> FitFigures:
    """The four figures from (n, C) logits of each side and their labels."""

    def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
        return float((np.argmax(logits, axis=-1) == labels).mean()) if len(labels) else math.nan

    return FitFigures(
        train_accuracy=accuracy(logits_in, labels_in),
        held_out_accuracy=accuracy(logits_out, labels_out),
        train_confidence=mean_confidence(logits_in, labels_in),
        held_out_confidence=mean_confidence(logits_out, labels_out),
    )


def distance(candidate: FitFigures, target: FitFigures) -> float:
    """The largest absolute difference of the four figures (NaN-free inputs)."""
    return max(abs(a - b) for a, b in zip(candidate.as_tuple(), target.as_tuple(), strict=True))


@dataclass(frozen=True)
class Candidate:
    """One point of the grid: the knobs the pilot sets on the policy's recipe."""

    epochs: int
    weight_decay: float
    augment: tuple[Augmentation, ...]

    def recipe(self, base: TrainingRecipe) -> TrainingRecipe:
        return base.model_copy(
            update={
                "epochs": self.epochs,
                "weight_decay": self.weight_decay,
                "augment": self.augment,
            }
        )

    def describe(self) -> str:
        augment = "[" + ", ".join(self.augment) + "]"
        return f"epochs {self.epochs}, weight_decay {self.weight_decay:g}, augment {augment}"


@dataclass(frozen=True)
class CandidateGrid:
    """The values the pilot may set, each knob in increasing order (augmentations from none
    to the most)."""

    epochs: tuple[int, ...]
    weight_decay: tuple[float, ...]
    augment: tuple[tuple[Augmentation, ...], ...]

    @classmethod
    def of(cls, settings: CalibrationGrid, recipe: TrainingRecipe) -> CandidateGrid:
        return cls(
            settings.epochs_of(recipe),
            settings.weight_decays_of(recipe),
            settings.augments_of(recipe),
        )

    @property
    def size(self) -> int:
        return len(self.epochs) * len(self.weight_decay) * len(self.augment)

    def candidate(self, position: Position) -> Candidate:
        e, w, a = position
        return Candidate(self.epochs[e], self.weight_decay[w], self.augment[a])

    def start(self, recipe: TrainingRecipe) -> Position:
        """The grid point nearest the policy's recipe (the user's best guess)."""
        e = _nearest(self.epochs, recipe.epochs, log=True)
        w = _nearest(self.weight_decay, recipe.weight_decay, log=False)
        wanted = tuple(sorted(set(recipe.augment)))
        if wanted in self.augment:
            a = self.augment.index(wanted)
        else:
            a = _nearest(tuple(len(option) for option in self.augment), len(wanted), log=False)
        return (e, w, a)

    def in_range(self, position: Position) -> bool:
        sizes = (len(self.epochs), len(self.weight_decay), len(self.augment))
        return all(0 <= index < size for index, size in zip(position, sizes, strict=True))


def _nearest(values: tuple[float, ...], value: float, *, log: bool) -> int:
    def gap(candidate: float) -> float:
        if log and candidate > 0 and value > 0:
            return abs(math.log(candidate / value))
        return abs(candidate - value)

    return min(range(len(values)), key=lambda index: (gap(values[index]), index))


@dataclass(frozen=True)
class Move:
    """One step on the grid: which knob, which way, and how to say it when it is off the grid."""

    knob: str
    step: Position
    wants: str

    def apply(self, position: Position) -> Position:
        e, w, a = position
        de, dw, da = self.step
        return (e + de, w + dw, a + da)


MORE_EPOCHS = Move("epochs", (1, 0, 0), "more epochs")
FEWER_EPOCHS = Move("epochs", (-1, 0, 0), "fewer epochs")
LESS_AUGMENT = Move("augment", (0, 0, -1), "less augmentation")
MORE_AUGMENT = Move("augment", (0, 0, 1), "more augmentation")
LESS_DECAY = Move("weight_decay", (0, -1, 0), "a lower weight decay")
MORE_DECAY = Move("weight_decay", (0, 1, 0), "a higher weight decay")
LESS_REGULARISATION = (LESS_AUGMENT, LESS_DECAY)
MORE_REGULARISATION = (MORE_AUGMENT, MORE_DECAY)


def _error(accuracy: float, confidence: float, tolerance: float) -> float:
    """A side's signed error: accuracy's, or confidence's once accuracy is within tolerance
    (accuracy saturates at 1 where confidence still tells the models apart)."""
    return accuracy if abs(accuracy) > tolerance else confidence


def wanted_moves(candidate: FitFigures, target: FitFigures, tolerance: float) -> tuple[Move, ...]:
    """The moves that bring the candidate's fit towards the target's, best first (empty when
    it matches)."""
    if distance(candidate, target) <= tolerance:
        return ()
    train = _error(
        candidate.train_accuracy - target.train_accuracy,
        candidate.train_confidence - target.train_confidence,
        tolerance,
    )
    held = _error(
        candidate.held_out_accuracy - target.held_out_accuracy,
        candidate.held_out_confidence - target.held_out_confidence,
        tolerance,
    )
    low, high = train < -tolerance, train > tolerance
    if low:  # fits its own samples too little: longer, or less regularised
        if held < -tolerance:
            return (MORE_EPOCHS, *LESS_REGULARISATION)
        return (*LESS_REGULARISATION, MORE_EPOCHS)
    if high:  # fits them too well: a larger gap than the target's, or simply too long
        if held > tolerance:
            return (FEWER_EPOCHS, *MORE_REGULARISATION)
        return (*MORE_REGULARISATION, FEWER_EPOCHS)
    if held < -tolerance:  # training fit right, generalises worse than the target
        return (*MORE_REGULARISATION, MORE_EPOCHS)
    return (*LESS_REGULARISATION, FEWER_EPOCHS)


@dataclass(frozen=True)
class Tried:
    """A candidate the pilot trained, with its figures and distance to the target."""

    position: Position
    candidate: Candidate
    figures: FitFigures
    distance: float


@dataclass(frozen=True)
class SearchOutcome:
    """The candidates in the order tried, the chosen one, and why the search stopped."""

    tried: tuple[Tried, ...]
    chosen: int
    matched: bool
    stopped: Stop
    #: What the chosen candidate still wants that the grid does not have (its knobs' ends).
    out_of_range: tuple[str, ...] = field(default=())

    @property
    def best(self) -> Tried:
        return self.tried[self.chosen]


def search(
    grid: CandidateGrid,
    start: Position,
    measure: Callable[[Candidate], FitFigures],
    target: FitFigures,
    tolerance: float,
    max_models: int,
) -> SearchOutcome:
    """Walk the grid from `start`, measuring at most `max_models` candidates (`measure` trains
    or loads one model of the candidate's recipe and returns its figures)."""
    tried: dict[Position, Tried] = {}
    position: Position | None = start
    stopped: Stop = "budget"
    while position is not None and len(tried) < max_models:
        candidate = grid.candidate(position)
        figures = measure(candidate)
        tried[position] = Tried(position, candidate, figures, distance(figures, target))
        if tried[position].distance <= tolerance:
            stopped = "matched"
            break
        position = _next(grid, position, wanted_moves(figures, target, tolerance), tried)
        if position is None:
            stopped = "exhausted"
    order = list(tried.values())
    chosen = min(range(len(order)), key=lambda index: (order[index].distance, index))
    best = order[chosen]
    return SearchOutcome(
        tried=tuple(order),
        chosen=chosen,
        matched=best.distance <= tolerance,
        stopped=stopped,
        out_of_range=_out_of_range(grid, best, target, tolerance),
    )


def _next(
    grid: CandidateGrid, position: Position, moves: tuple[Move, ...], tried: dict[Position, Tried]
) -> Position | None:
    for move in moves:
        destination = move.apply(position)
        if grid.in_range(destination) and destination not in tried:
            return destination
    return None


def _out_of_range(
    grid: CandidateGrid, best: Tried, target: FitFigures, tolerance: float
) -> tuple[str, ...]:
    """The best candidate's first wanted move, when the grid has no room for it."""
    moves = wanted_moves(best.figures, target, tolerance)
    if not moves or grid.in_range(moves[0].apply(best.position)):
        return ()
    return (f"{moves[0].knob} ({moves[0].wants} than the grid's {_end(grid, moves[0])})",)


def _end(grid: CandidateGrid, move: Move) -> str:
    values: tuple[object, ...] = {
        "epochs": grid.epochs,
        "weight_decay": grid.weight_decay,
        "augment": grid.augment,
    }[move.knob]
    end = values[-1] if sum(move.step) > 0 else values[0]
    if isinstance(end, tuple):
        return "[" + ", ".join(end) + "]"
    return f"{end:g}" if isinstance(end, float) else str(end)


def pilot_epochs_bound(grid: CandidateGrid, start: Position, max_models: int) -> int:
    """The most epochs the pilot's models can take together: the walk moves one grid step per
    model, so its k-th model has at most the epochs k steps above the start (for a plan)."""
    last = len(grid.epochs) - 1
    return sum(grid.epochs[min(start[0] + k, last)] for k in range(max_models))
