"""The calibration pilot in a run (`reference_training.calibrate`, docs/calibration.md).

Before the reference models train, the pilot trains (or loads) the first reference model of
the first reference attack's set under each candidate recipe the search
(`mia_audit.references.calibration`) picks, compares its fit with the target's, and hands the
run the provider of the recipe that fits most like the target. Each candidate is a recipe
like any other: its model is cached by the same content keys, so a rerun (or the next release
audited with the same data) loads the pilot's models instead of training them, and the chosen
candidate's model is the run's first reference model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from mia_audit.attacks.base import ViewLogits
from mia_audit.attacks.queries import MIRROR
from mia_audit.attacks.reference_sets import ReferenceRequest
from mia_audit.errors import PolicyError
from mia_audit.models.inference import predict
from mia_audit.pipeline.prepare import PreparedRun
from mia_audit.pipeline.references import reference_setup
from mia_audit.progress import Notify
from mia_audit.references.calibration import (
    Candidate,
    CandidateGrid,
    FitFigures,
    SearchOutcome,
    figures_of,
    flip_gap,
    search,
)
from mia_audit.references.executors import create_executor
from mia_audit.references.executors.base import Executor, close_executor
from mia_audit.references.provider import ReferenceModels, ReferenceSetup
from mia_audit.result import CalibrationCandidate, ReferenceCalibration


def target_figures(prepared: PreparedRun, target: ViewLogits) -> FitFigures:
    """The target's figures on its members and non-members: the four of its identity view,
    and its flip gap (one more pass of the audit set, mirrored)."""
    audit_set = prepared.data.audit_set
    logits, members, labels = target.identity, audit_set.is_member, audit_set.labels
    figures = figures_of(logits[members], labels[members], logits[~members], labels[~members])
    setup = reference_setup(prepared)
    mirrored = predict(
        setup.target.classifier,
        audit_set.images,
        [MIRROR],
        setup.preprocess,
        setup.batch_size,
    )[0]
    gap = flip_gap(
        (logits[members], mirrored[members], labels[members]),
        (logits[~members], mirrored[~members], labels[~members]),
    )
    return replace(figures, flip_gap=gap)


@dataclass
class _Pilot:
    """The candidates' providers, notes and timings as the search measures them."""

    prepared: PreparedRun
    base: ReferenceSetup
    executor: Executor
    requests: Sequence[ReferenceRequest]
    providers: dict[Candidate, ReferenceModels] = field(default_factory=dict)
    notes: dict[Candidate, list[str]] = field(default_factory=dict)
    timings: dict[Candidate, tuple[float, bool]] = field(default_factory=dict)

    def measure(self, candidate: Candidate) -> FitFigures:
        prepared = self.prepared
        prepared.progress.note(
            f"calibration pilot: candidate {len(self.providers) + 1} ({candidate.describe()})"
        )
        notes = self.notes.setdefault(candidate, [])
        provider = ReferenceModels(
            replace(self.base, recipe=candidate.recipe(self.base.recipe)),
            prepared.policy.runtime.cache_dir,
            executor=self.executor,
            progress=prepared.progress,
            notify=notes.append,
        )
        self.providers[candidate] = provider
        start = time.perf_counter()
        measured = provider.pilot(self.requests)
        self.timings[candidate] = (round(time.perf_counter() - start, 3), measured.trained)
        fit = measured.fit
        return FitFigures(
            fit.train_accuracy,
            fit.held_out_accuracy,
            fit.train_confidence,
            fit.held_out_confidence,
            measured.flip_gap,
        )


def calibrated_references(
    prepared: PreparedRun,
    requests: Sequence[ReferenceRequest],
    target: FitFigures,
    notify: Notify,
) -> tuple[ReferenceModels, ReferenceCalibration]:
    """Run the pilot; the chosen recipe's provider (its first model ready, the executor open)
    and the record of what the pilot tried. Raises PolicyError (exit 2) on a miss under
    `preconditions.reference_fit: error`."""
    policy, progress = prepared.policy, prepared.progress
    settings = policy.reference_training.calibration
    base = reference_setup(prepared)
    grid = CandidateGrid.of(settings, base.recipe)
    executor = create_executor(
        policy.runtime.executor, device=prepared.device, notify=progress.note
    )
    pilot = _Pilot(prepared, base, executor, requests)
    start = time.perf_counter()
    try:
        outcome = search(
            grid,
            grid.start(base.recipe),
            pilot.measure,
            target,
            settings.tolerance,
            settings.max_models,
        )
        record = _record(outcome, pilot, target, round(time.perf_counter() - start, 3))
        chosen = outcome.best.candidate
        _forward_notes(pilot, chosen, notify)
        if not outcome.matched:
            _miss(record, policy.preconditions.reference_fit, notify)
    except BaseException:
        close_executor(executor)
        raise
    provider = pilot.providers[chosen]
    provider.notify = notify
    progress.note(f"calibration pilot: chose {chosen.describe()}")
    return provider, record


def _forward_notes(pilot: _Pilot, chosen: Candidate, notify: Notify) -> None:
    """The chosen candidate's notes as the run's; the others' marked as the pilot's."""
    for candidate, notes in pilot.notes.items():
        for note in notes:
            notify(
                note
                if candidate == chosen
                else f"calibration pilot ({candidate.describe()}): {note}"
            )


def _record(
    outcome: SearchOutcome, pilot: _Pilot, target: FitFigures, seconds: float
) -> ReferenceCalibration:
    settings = pilot.prepared.policy.reference_training.calibration
    candidates = []
    for tried in outcome.tried:
        took, trained = pilot.timings[tried.candidate]
        figures = tried.figures
        candidates.append(
            CalibrationCandidate(
                epochs=tried.candidate.epochs,
                weight_decay=tried.candidate.weight_decay,
                augment=list(tried.candidate.augment),
                train_accuracy=figures.train_accuracy,
                held_out_accuracy=figures.held_out_accuracy,
                train_confidence=figures.train_confidence,
                held_out_confidence=figures.held_out_confidence,
                flip_gap=figures.flip_gap,
                distance=tried.distance,
                trained=trained,
                seconds=took,
            )
        )
    return ReferenceCalibration(
        target_train_accuracy=target.train_accuracy,
        target_held_out_accuracy=target.held_out_accuracy,
        target_train_confidence=target.train_confidence,
        target_held_out_confidence=target.held_out_confidence,
        target_flip_gap=target.flip_gap,
        tolerance=settings.tolerance,
        max_models=settings.max_models,
        candidates=candidates,
        chosen=outcome.chosen,
        matched=outcome.matched,
        stopped=outcome.stopped,
        out_of_range=list(outcome.out_of_range),
        seconds=seconds,
    )


def miss_message(record: ReferenceCalibration) -> str:
    """What a miss says: how far the best candidate is, and which knob ran out."""
    best = record.candidates[record.chosen]
    augment = "[" + ", ".join(best.augment) + "]"
    return (
        f"reference_training.calibrate: no candidate recipe came within the tolerance "
        f"{record.tolerance:g} of the target's fit; the best (epochs {best.epochs}, weight_decay "
        f"{best.weight_decay:g}, augment {augment}) is {best.distance:.3f} away (training "
        f"accuracy {best.train_accuracy:.3f} vs {record.target_train_accuracy:.3f}, held-out "
        f"{best.held_out_accuracy:.3f} vs {record.target_held_out_accuracy:.3f}); "
        f"{_why_missed(record)}"
    )


def _why_missed(record: ReferenceCalibration) -> str:
    """The reason, with the key that widens the search."""
    if record.out_of_range:
        knobs = [item.split(" ", 1)[0] for item in record.out_of_range]
        widen = " and ".join(f"reference_training.calibration.{knob}" for knob in knobs)
        return f"{record.miss_reason()}: widen {widen}"
    if record.stopped == "budget":
        return f"{record.miss_reason()}: raise reference_training.calibration.max_models"
    return f"{record.miss_reason()}: widen reference_training.calibration"


def _miss(record: ReferenceCalibration, on_failure: str, notify: Notify) -> None:
    message = miss_message(record)
    if on_failure == "error":
        raise PolicyError(
            f"{message}; preconditions.reference_fit: error stops the audit here (warn lets "
            "it run with the best candidate)"
        )
    notify(f"{message}; the audit goes on with the best candidate")
