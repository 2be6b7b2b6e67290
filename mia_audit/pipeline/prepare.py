"""Everything a run does before it scores any data: load and check the model and the data,
build the audit set, probe the model, and refuse (exit 2) what the run would refuse later.

`mia-audit run` continues from a `PreparedRun` with inference and the attacks; `mia-audit
validate` stops here ("run will not reject this"), and `mia-audit plan` measures throughput on
it. One sequence for all three, so validate can never pass what run refuses up front.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from mia_audit.attacks.base import Attack, check_attack_data, check_attack_outputs
from mia_audit.attacks.registry import create_attack
from mia_audit.data.audit import AuditSet
from mia_audit.data.images import ImageSet
from mia_audit.errors import InputError
from mia_audit.gate.baseline import Baseline
from mia_audit.gate.evaluate import check_gate_support, gate_baseline, utc_today
from mia_audit.models.device import resolve_device
from mia_audit.models.inference import Preprocessor, run_batch
from mia_audit.models.loading import LoadedModel
from mia_audit.models.outputs import OutputDecision
from mia_audit.pipeline import preconditions
from mia_audit.pipeline.inputs import (
    AuditData,
    AuditInputs,
    LoadedSets,
    build_audit_data,
    check_population,
    population_requirement,
)
from mia_audit.pipeline.target import check_model, naming_model, preprocessor
from mia_audit.policy.floor_file import Floor
from mia_audit.policy.floor_rules import check_against_floor, check_audit_size, check_output_kind
from mia_audit.policy.schema import Policy
from mia_audit.progress import Progress, SilentProgress
from mia_audit.result import PolicyInfo


@dataclass(frozen=True)
class PreparedRun:
    """A run up to its first scored image, every input loaded and checked: the one value the
    rest of the run (inference, reference models, attacks, the plan) reads its inputs from."""

    policy: Policy
    #: Where the policy came from (result.json's `policy`).
    origin: PolicyInfo
    #: Where `module:function` factories are looked up.
    search_path: Path | None
    #: Hears the stages and notes of the rest of the run.
    progress: Progress
    attacks: tuple[Attack[Any], ...]
    baseline: Baseline | None
    today: date
    device: str
    data: AuditData
    #: The target at the precision its probe chose.
    model: LoadedModel
    num_classes: int
    preprocess: Preprocessor
    #: What the model returns (`model.outputs`, decided on the probe batch).
    outputs: OutputDecision
    #: Notes so far (sample sizes); they go into result.json.
    notes: tuple[str, ...]
    #: Seconds spent loading the data and the model.
    load_seconds: float = 0.0
    #: The workflow's floor (docs/floor.md), when the run has one.
    floor: Floor | None = None


def prepare_run(
    inputs: AuditInputs,
    progress: Progress | None = None,
    *,
    clock: Callable[[], date] = utc_today,
    device: str | None = None,
) -> PreparedRun:
    """Load and check everything a run needs before scoring (PolicyError / InputError, exit 2).

    `device` overrides `runtime.device` (validate probes on the CPU).
    """
    import time

    progress = progress or SilentProgress()
    policy = inputs.policy
    check_against_floor(policy, inputs.floor)
    attacks = tuple(create_attack(config) for config in policy.attacks)
    baseline = gate_baseline(policy.gate)
    today = clock()
    preconditions.check_waivers(policy.gate.suppressions, today)
    start = time.perf_counter()
    with progress.stage("loading the data and the model"):
        chosen = device or resolve_device(policy.runtime.device)
        sets = inputs.load_sets()
        check_pixel_scale(sets, policy.preprocessing.normalises)
        model = inputs.load_model(chosen)
        preprocess = preprocessor(policy)
        check_image_shapes(sets, _model_accepts(model, preprocess))
        data = build_audit_data(policy, sets, population_requirement(policy))
        if policy.data.population is not None:
            check_population(policy, data.members_available, data.audit_set.population)
    load_seconds = time.perf_counter() - start
    notes = _check_sizes(inputs, attacks, data.audit_set, progress)
    with naming_model(policy):
        num_classes, model, outputs = check_model(model, data, policy, preprocess)
    check_output_kind(inputs.floor, outputs.declared, outputs.detected)
    check_attack_outputs(attacks, outputs.kind, _kind_source(outputs.declared))
    progress.note(outputs.note)
    return PreparedRun(
        policy=policy,
        origin=inputs.origin,
        floor=inputs.floor,
        search_path=inputs.search_path,
        progress=progress,
        attacks=attacks,
        baseline=baseline,
        today=today,
        device=chosen,
        data=data,
        model=model,
        num_classes=num_classes,
        preprocess=preprocess,
        outputs=outputs,
        notes=tuple(notes),
        load_seconds=load_seconds,
    )


def _check_sizes(
    inputs: AuditInputs, attacks: tuple[Attack[Any], ...], audit_set: AuditSet, progress: Progress
) -> list[str]:
    """The audit set against the floor, the gate and the attacks; its notes, said, and the
    size notes the result keeps."""
    policy = inputs.policy
    check_audit_size(inputs.floor, audit_set.n_members, audit_set.n_non_members)
    check_gate_support(policy.gate, audit_set.n_non_members, policy.statistics.min_false_positives)
    check_attack_data(attacks, audit_set.n_members, audit_set.n_non_members)
    for note in audit_set.notes:  # result.json keeps these under data.notes
        progress.note(note)
    notes = _checked_sizes(policy, audit_set)
    for note in notes:
        progress.note(note)
    return notes


def _kind_source(declared: str) -> str:
    return "detected from the probe batch" if declared == "auto" else "model.outputs"


def _checked_sizes(policy: Policy, audit_set: AuditSet) -> list[str]:
    size = preconditions.AuditSize(
        audit_set.n_members, audit_set.n_non_members, _class_sizes(audit_set)
    )
    return preconditions.check_sample_sizes(
        policy.gate, size, policy.statistics, policy.preconditions
    )


def _class_sizes(audit_set: AuditSet) -> list[tuple[int, int]]:
    """(members, non-members) of every class in the audit set."""
    labels, members = audit_set.labels, audit_set.is_member
    return [
        (int((members & (labels == c)).sum()), int((~members & (labels == c)).sum()))
        for c in np.unique(labels)
    ]


# --- pixel scale -------------------------------------------------------------------------------


def check_pixel_scale(sets: LoadedSets, normalises: bool) -> None:
    """Float images must be on the 0..1 scale the preprocessing's mean and std are given on:
    0..255 floats would reach the model 255 times too bright, and the weak-target check would
    refuse the audit without saying why. (With `preprocessing: none` the model takes the values
    as they are.)"""
    if not normalises:
        return
    for part in sets.parts.values():
        images = part.images
        if images.dtype == np.uint8 or not len(part):
            continue
        low, high = float(images.min()), float(images.max())
        if low >= 0.0 and high <= 1.0:
            continue
        advice = (
            "divide them by 255 or save them as uint8" if high > 1.0 else "save them unnormalised"
        )
        raise InputError(
            f"{part.source}: float images range from {low:.4g} to {high:.4g}, outside the 0..1 "
            "scale of preprocessing's mean and std, so the model would see wrongly scaled input; "
            f"{advice} (float pixels are read as 0..1, uint8 as 0..255), or set "
            "preprocessing: none if the model takes these values as they are"
        )


# --- image shapes ---------------------------------------------------------------------------------


def _model_accepts(model: LoadedModel, preprocess: Preprocessor) -> Callable[[ImageSet], bool]:
    """Whether the model runs on one image of a set (its shape after preprocessing)."""

    def accepts(image_set: ImageSet) -> bool:
        try:
            run_batch(model.classifier, preprocess(image_set.images[:1]))
        except Exception:  # the tool's errors, torch's, onnxruntime's own types for a shape
            return False
        return True

    return accepts


def check_image_shapes(sets: LoadedSets, accepts: Callable[[ImageSet], bool]) -> None:
    """All data must share one image shape; when a file differs, name the one that does not
    fit the model (not whichever was read second).

    The model decides when it runs on some of the shapes and not on others (a fixed input size,
    an ONNX export); when it runs on all of them (a network with adaptive pooling, or
    `preprocessing.input_size`), the shape most files share decides, and the members' on a tie.
    """
    parts = [part for part in sets.parts.values() if len(part)]
    shapes = list(dict.fromkeys(part.image_shape for part in parts))
    if len(shapes) < 2:
        return
    runs = {shape: accepts(next(p for p in parts if p.image_shape == shape)) for shape in shapes}
    fitting = [shape for shape in shapes if runs[shape]]
    if fitting and len(fitting) < len(shapes):
        expected = _most_common(parts, fitting)
        odd = next(p for p in parts if not runs[p.image_shape])
        raise InputError(
            f"{odd.source}: images have shape {odd.image_shape} (C, H, W) but the model takes "
            f"{expected}, like {_sources(parts, expected)}; all data must share the model's "
            "image shape: save the file at that size (or set preprocessing.input_size)"
        )
    expected = _most_common(parts, shapes)
    odd = next(p for p in parts if p.image_shape != expected)
    raise InputError(
        f"{odd.source}: images have shape {odd.image_shape} (C, H, W) but "
        f"{_sources(parts, expected)} {'has' if _count(parts, expected) == 1 else 'have'} "
        f"{expected}; all data must share one image shape"
    )


def _count(parts: Sequence[ImageSet], shape: tuple[int, ...]) -> int:
    return sum(part.image_shape == shape for part in parts)


def _most_common(parts: Sequence[ImageSet], shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    """The shape most files have, the first listed (the members') on a tie."""
    return max(shapes, key=lambda shape: (_count(parts, shape), -shapes.index(shape)))


def _sources(parts: Sequence[ImageSet], shape: tuple[int, ...]) -> str:
    return " and ".join(part.source for part in parts if part.image_shape == shape)
