"""The calibration pilot's search (pure): which recipe's reference models fit like the target.

Reference attacks are only as strong as the reference models' likeness to the target, and the
person running the gate often does not know the target's recipe. The knobs that decide how a
model fits are its length (`epochs`) and its regularisation (`augment`, `weight_decay`); the
pilot trains one model per candidate recipe (the run's first reference model, so a candidate
that matches is kept) and compares four figures with the target's (`FitFigures`): accuracy on
its training samples against the target's on members, on held-out samples against the target's
on non-members, and the mean confidence in the true class on each side. The
confidences are the loss distribution on the scale LiRA reads (clipped log-odds,
`mean_confidence`): an overfit target is 100 % accurate on its members after 20 epochs and
after 40, but how confident it is keeps rising. A fifth figure steers the walk without
deciding the match: the flip gap (`flip_gap`) tells whether the target was trained with
mirrored images, from the target alone.

The search is a greedy walk over the grid (`CandidateGrid`), from the grid point nearest the
policy's recipe and always on from the closest candidate so far: one that fits its training
samples too little trains longer or with less regularisation, one whose gap between training
and held-out figures is too large gets more regularisation, and so on (`wanted_moves`). It
stops at the first candidate within the tolerance, when the budget (`max_models`) is spent, or
when every move it wants is tried or off the grid; the best candidate (smallest `distance`) is
chosen. Everything here is deterministic: the same figures give the same walk.
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
    """How a model fits: accuracy and mean true-class confidence on the samples it trained on
    (for the target: its members) and on samples it did not (non-members), and its `flip_gap`
    (NaN when not measured)."""

    train_accuracy: float
    held_out_accuracy: float
    train_confidence: float
    held_out_confidence: float
    flip_gap: float = math.nan

    def as_tuple(self) -> tuple[float, float, float, float]:
        """The figures `distance` compares. (The flip gap steers the walk but is no part of
        the match: it also depends on the architecture, which the pilot does not change.)"""
        return (
            self.train_accuracy,
            self.held_out_accuracy,
            self.train_confidence,
            self.held_out_confidence,
        )


def flip_gap(
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    held_out: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> float:
    """How much more a model's confidence drops on mirrored training samples than on mirrored
    held-out ones; each side is (logits, logits of the mirrored images, labels).

    A model trained without flips memorises its samples as they are: mirrored, its training
    samples lose the confidence it learnt for them, held-out ones hardly do (a gap well above
    0). Trained with flips, it has seen both views (a gap near 0). The target's gap says which
    way it was trained, without training anything; a candidate's gap says whether its
    augmentation is the target's.
    """

    def drop(logits: np.ndarray, mirrored: np.ndarray, labels: np.ndarray) -> float:
        return mean_confidence(logits, labels) - mean_confidence(mirrored, labels)

    return drop(*train) - drop(*held_out)


#: Log-odds beyond which confidence counts as certain (p = 1 - 5e-5): the confidence figure
#: is the mean log-odds of the true class clipped to +-LOG_ODDS_SPAN, over LOG_ODDS_SPAN.
LOG_ODDS_SPAN = 10.0


def mean_confidence(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean confidence in each row's label on LiRA's scale: the log-odds of its probability,
    log(p / (1 - p)), clipped to +-LOG_ODDS_SPAN and divided by it (-1 .. 1; 0 rows: NaN).

    LiRA and RMIA read these log-odds, not the probability: 0.986 and 0.999 are both
    "certain" as probabilities (a 0.013 gap) but 4.3 and 6.9 in log-odds (a 0.26 gap here),
    the difference between a reference model that memorised its samples like the target and
    one that did not quite.
    """
    if not len(labels):
        return float("nan")
    odds = signals.scaled_logit(np.asarray(logits, dtype=np.float64), np.asarray(labels))
    return float(np.clip(odds, -LOG_ODDS_SPAN, LOG_ODDS_SPAN).mean() / LOG_ODDS_SPAN)


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
    """The largest absolute difference of the four figures of `as_tuple`."""
    ours, theirs = candidate.as_tuple(), target.as_tuple()
    return max(abs(a - b) for a, b in zip(ours, theirs, strict=True))


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
        wanted = set(recipe.augment)

        def unlike(index: int) -> tuple[int, int, int]:  # fewest differences, most in common
            option = set(self.augment[index])
            return (len(option ^ wanted), -len(option & wanted), index)

        return (e, w, min(range(len(self.augment)), key=unlike))

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
    flips = candidate.flip_gap - target.flip_gap  # NaN (never beyond tolerance) if unmeasured
    fit = _fit_moves(candidate, target, tolerance)
    # The candidate memorises views the target generalises over (the target saw augmentation),
    # or the other way round; with augmentation at the grid's end, the length moves the gap.
    if flips > tolerance:
        return (MORE_AUGMENT, *fit, FEWER_EPOCHS)
    if flips < -tolerance:
        return (LESS_AUGMENT, *fit, MORE_EPOCHS)
    return fit


def _fit_moves(candidate: FitFigures, target: FitFigures, tolerance: float) -> tuple[Move, ...]:
    """The moves that the accuracy and confidence errors want, best first."""
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
    # Weight decay comes last on either side: over a few dozen epochs it moves the fit least.
    low, high = train < -tolerance, train > tolerance
    if low:  # fits its own samples too little: longer, or less regularised
        if held < -tolerance:
            return (MORE_EPOCHS, LESS_AUGMENT, LESS_DECAY)
        return (LESS_AUGMENT, MORE_EPOCHS, LESS_DECAY)
    if high:  # fits them too well: a larger gap than the target's, or simply too long
        if held > tolerance:
            return (FEWER_EPOCHS, MORE_AUGMENT, MORE_DECAY)
        return (MORE_AUGMENT, FEWER_EPOCHS, MORE_DECAY)
    if held < -tolerance:  # training fit right, generalises worse than the target
        return (*MORE_REGULARISATION, MORE_EPOCHS)
    if held > tolerance:  # training fit right, generalises better than the target
        return (*LESS_REGULARISATION, FEWER_EPOCHS)
    return ()


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
        best = min(tried.values(), key=lambda t: t.distance)  # the first of equals
        moves = wanted_moves(best.figures, target, tolerance)
        position = _next(grid, best, moves, tried, target)
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
    grid: CandidateGrid,
    best: Tried,
    moves: tuple[Move, ...],
    tried: dict[Position, Tried],
    target: FitFigures,
) -> Position | None:
    """The first wanted move from the best candidate that lands on an untried grid point (an
    epochs move goes as far as `_epochs_index` says, else one step)."""
    for move in moves:
        steps = [move.apply(best.position)]
        if move.knob == "epochs":
            _, w, a = best.position
            steps.insert(0, (_epochs_index(grid, best, tried, move.step[0] > 0, target), w, a))
        for destination in steps:
            if grid.in_range(destination) and destination not in tried:
                return destination
    return None


def _epochs_index(
    grid: CandidateGrid, best: Tried, tried: dict[Position, Tried], up: bool, target: FitFigures
) -> int:
    """Where an epochs move from the best candidate goes: to the epochs at which the line
    through it and the nearest tried candidate of the same regularisation (training confidence
    against log epochs) meets the target's training confidence; without such a candidate, to
    twice (half) its epochs. At least one grid step, at most a factor of 2 (`_epochs_reach`)."""
    index, (epochs, current) = best.position[0], (grid.epochs, grid.epochs[best.position[0]])
    goal = 2.0 * current if up else current / 2
    line = [t for t in tried.values() if t.position[1:] == best.position[1:] and t is not best]
    if line:
        other = min(line, key=lambda t: abs(t.position[0] - index))
        rise = other.figures.train_confidence - best.figures.train_confidence
        if math.isfinite(rise) and rise != 0:
            slope = math.log(epochs[other.position[0]] / current) / rise
            log_ratio = (target.train_confidence - best.figures.train_confidence) * slope
            goal = current * math.exp(min(max(log_ratio, -math.log(2)), math.log(2)))
    ahead = _epochs_reach(grid, index, up)
    if not ahead:
        return index + (1 if up else -1)  # off the grid: the caller's in_range says so
    return min(ahead, key=lambda i: (abs(math.log(epochs[i] / goal)), abs(i - index)))


def _epochs_reach(grid: CandidateGrid, index: int, up: bool) -> list[int]:
    """The epochs indices one move can reach: beyond `index`, within a factor of 2 (at least
    the next one)."""
    epochs, current = grid.epochs, grid.epochs[index]
    if up:
        beyond = list(range(index + 1, len(epochs)))
        within = [i for i in beyond if epochs[i] <= 2 * current]
    else:
        beyond = list(range(index - 1, -1, -1))
        within = [i for i in beyond if epochs[i] >= current / 2]
    return within or beyond[:1]


def _out_of_range(
    grid: CandidateGrid, best: Tried, target: FitFigures, tolerance: float
) -> tuple[str, ...]:
    """The first move the best candidate's fit wants (the four figures that decide a match, not
    the flip gap, which only steers), when the grid has no room for it. Less than no
    augmentation or no weight decay is no grid's to widen: such a move is passed over (every
    fit wants an epochs move as well)."""
    if distance(best.figures, target) <= tolerance:
        return ()
    moves = _fit_moves(best.figures, target, tolerance)
    possible = [move for move in moves if not _at_floor(grid, move, best.position)]
    if not possible or grid.in_range(possible[0].apply(best.position)):
        return ()
    move = possible[0]
    return (f"{move.knob} ({move.wants} than the grid's {_end(grid, move)})",)


def _at_floor(grid: CandidateGrid, move: Move, position: Position) -> bool:
    """Whether `move` asks for less than no augmentation or no weight decay."""
    _, decay, augment = position
    if move is LESS_AUGMENT:
        return augment == 0 and grid.augment[0] == ()
    return move is LESS_DECAY and decay == 0 and grid.weight_decay[0] == 0


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
    """The most epochs the pilot's models can take together: one move reaches at most twice
    the epochs (or the next grid value), so its k-th model has at most the epochs k such moves
    above the start (for a plan)."""
    total, index = 0, start[0]
    for _ in range(max_models):
        total += grid.epochs[index]
        index = max(_epochs_reach(grid, index, up=True), default=index)
    return total
