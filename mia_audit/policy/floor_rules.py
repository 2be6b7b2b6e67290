"""The floor's rules: the policy may be stricter than the floor, never weaker (docs/floor.md).

`check_against_floor` compares a validated policy with the floor before anything is loaded and
lists every violation at once (exit 2), each naming the key, the floor's value and the
policy's. `check_audit_size` and `check_output_kind` hold what only the loaded data and the
probe show: the audit's real size and the kind of outputs the model returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mia_audit.attacks.config import AttackConfig
from mia_audit.errors import PolicyError
from mia_audit.gate.evaluate import class_min_samples, describe_limit
from mia_audit.gate.spec import ClassAucLimit, ConditionId, GateLimit, GateSpec
from mia_audit.policy.floor_file import Floor
from mia_audit.policy.schema import Policy
from mia_audit.result import FloorInfo

#: Attack settings where more is stronger (more reference models, a larger query budget).
AT_LEAST = frozenset({"reference_models", "shadow_models", "budget", "directions"})
#: Output kinds from the least to the most an attack can read.
OUTPUT_RANK = {"labels": 0, "probabilities": 1, "logits": 2}


def check_against_floor(policy: Policy, floor: Floor | None) -> None:
    """Raise PolicyError listing every way the policy is weaker than the floor."""
    if floor is None:
        return
    problems = [
        *_preconditions(policy, floor),
        *_attacks(policy, floor),
        *_gate(policy, floor),
        *_statistics(policy, floor),
        *_data_and_model(policy, floor),
        *_recipe(policy, floor),
    ]
    if problems:  # a narrowed gate.attacks is one problem, whatever the floor's conditions
        raise PolicyError.listing(list(dict.fromkeys(problems)))


def check_audit_size(floor: Floor | None, n_members: int, n_non_members: int) -> None:
    """The audit set the data files give holds the floor's size on each side (the policy's
    `data.max_per_side` is checked up front; smaller files are found here)."""
    least = None if floor is None else floor.spec.data.max_per_side
    if floor is not None and least is not None and min(n_members, n_non_members) < least:
        raise PolicyError(
            f"data: the audit set has {n_members} members and {n_non_members} non-members, but "
            f"{floor.source} requires at least {least} per side (data.max_per_side: {least}); "
            "add data (a smaller audit lets chance decide the verdict)"
        )


def check_output_kind(floor: Floor | None, declared: str, detected: str) -> None:
    """Under a floor the policy may not declare a weaker output kind than the probe batch
    shows (`labels` on a logits model hides every signal but the predicted class)."""
    if floor is not None and declared != "auto" and OUTPUT_RANK[declared] < OUTPUT_RANK[detected]:
        raise PolicyError(
            f"model.outputs: declares {declared}, but the model returns {detected} (the probe "
            f"batch); {floor.source} audits what the model returns: set model.outputs: auto "
            f"(or {detected})"
        )


# --- preconditions, statistics, data, model, recipe ---------------------------------------------


def _preconditions(policy: Policy, floor: Floor) -> Iterator[str]:
    ours, theirs = policy.preconditions, floor.spec.preconditions
    for key in ("allow_small_audit", "allow_weak_target"):
        if getattr(ours, key) and not getattr(theirs, key):
            yield _relaxed(f"preconditions.{key}", floor, "false", "true")
    if ours.max_shared_fraction > theirs.max_shared_fraction:
        floor_value, value = f"{theirs.max_shared_fraction:g}", f"{ours.max_shared_fraction:g}"
        yield _relaxed("preconditions.max_shared_fraction", floor, floor_value, value)
    if theirs.reference_fit == "error" and ours.reference_fit != "error":
        yield (
            f"preconditions.reference_fit: is {ours.reference_fit}, but {floor.source} requires "
            "error (reference models that do not fit like the target understate the risk); "
            "set preconditions.reference_fit: error"
        )


def _relaxed(key: str, floor: Floor, floor_value: str, value: str) -> str:
    return (
        f"{key}: relaxes a check made before the verdict, which a run with {floor.source} "
        f"does not allow (the floor has {floor_value}, the policy {value}); remove it (relaxed "
        "checks are for local smoke tests)"
    )


def _statistics(policy: Policy, floor: Floor) -> Iterator[str]:
    ours, theirs = policy.statistics, floor.spec.statistics
    for key in ("confidence_level", "min_false_positives", "n_resamples"):
        value, least = getattr(ours, key), getattr(theirs, key)
        if value < least:
            yield (
                f"statistics.{key}: {value:g} is below {floor.source}'s {least:g}; set it to "
                f"{least:g} or higher"
            )
    if ours.delta > theirs.delta:
        yield (
            f"statistics.delta: {ours.delta:g} is above {floor.source}'s {theirs.delta:g} (a "
            f"larger delta lowers the epsilon bound); set it to {theirs.delta:g} or lower"
        )


def _data_and_model(policy: Policy, floor: Floor) -> Iterator[str]:
    least = floor.spec.data.max_per_side
    size = policy.data.max_per_side
    if least is not None and size is not None and size < least:
        yield (
            f"data.max_per_side: {size} is below {floor.source}'s audit size of {least} per "
            f"side; set it to {least} or more, or remove it"
        )
    seed = floor.spec.runtime.seed
    if seed is not None and policy.runtime.seed != seed:
        yield (
            f"runtime.seed: is {policy.runtime.seed}, but {floor.source} pins {seed} (a seed "
            f"chosen until the audit passes decides nothing); set runtime.seed: {seed}"
        )
    kind = floor.spec.model.outputs
    if kind != "auto" and policy.model.outputs not in ("auto", kind):
        yield (
            f"model.outputs: is {policy.model.outputs}, but {floor.source} requires {kind}; "
            f"set model.outputs: {kind} (or auto)"
        )


def _recipe(policy: Policy, floor: Floor) -> Iterator[str]:
    if not policy.reference_attacks:
        return
    pins = floor.spec.pinned_recipe
    for key, pinned in pins.items():
        if key == "calibration":
            yield from _calibration(policy, floor)
            continue
        value = _recipe_value(policy, key)
        if value != pinned:
            yield (
                f"reference_training.{key}: is {_shown(value)}, but {floor.source} pins "
                f"{_shown(pinned)}; set reference_training.{key}: {_shown(pinned)}"
            )
    if policy.reference_training.calibrate:
        yield from _pins_the_pilot_may_change(policy, floor, pins)


#: The recipe knobs the calibration pilot sets, and the grid method that lists its values.
PILOT_KNOBS = {"epochs": "epochs_of", "weight_decay": "weight_decays_of", "augment": "augments_of"}


def _pins_the_pilot_may_change(policy: Policy, floor: Floor, pins: dict[str, Any]) -> Iterator[str]:
    """A knob the floor pins is the pilot's only value for it (the pilot would otherwise
    train the reference models with another)."""
    training = policy.reference_training
    for key, method in PILOT_KNOBS.items():
        if key not in pins:
            continue
        values = getattr(training.calibration, method)(training)
        pinned = tuple(sorted(set(pins[key]))) if key == "augment" else pins[key]
        if values != (pinned,):
            yield (
                f"reference_training.calibration.{key}: the calibration pilot may try "
                f"{_shown(values)}, but {floor.source} pins {key} {_shown(pins[key])}; set "
                f"reference_training.calibration.{key}: [{_shown(pins[key])}] (or calibrate: "
                "false)"
            )


def _calibration(policy: Policy, floor: Floor) -> Iterator[str]:
    """A floor's pilot settings: tolerance no looser, budget no smaller, its grids as set."""
    ours, theirs = policy.reference_training.calibration, floor.spec.reference_training.calibration
    key = "reference_training.calibration"
    if ours.tolerance > theirs.tolerance:
        yield (
            f"{key}.tolerance: {ours.tolerance:g} is above {floor.source}'s "
            f"{theirs.tolerance:g} (a looser match calls a worse recipe calibrated); set it to "
            f"{theirs.tolerance:g} or lower"
        )
    if ours.max_models < theirs.max_models:
        yield (
            f"{key}.max_models: {ours.max_models} is below {floor.source}'s "
            f"{theirs.max_models}; set it to {theirs.max_models} or higher"
        )
    for knob in sorted(theirs.model_fields_set & set(PILOT_KNOBS)):
        if getattr(ours, knob) != getattr(theirs, knob):
            pinned = _shown(getattr(theirs, knob))
            yield (
                f"{key}.{knob}: is {_shown(getattr(ours, knob))}, but {floor.source} pins "
                f"{pinned}; set {key}.{knob}: {pinned}"
            )


def _recipe_value(policy: Policy, key: str) -> Any:
    """The recipe value the run uses (architecture and cifar_stem default to the model's)."""
    value = getattr(policy.reference_training, key)
    if value is None and key in ("architecture", "cifar_stem"):
        return getattr(policy.model, key)
    return value


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(map(_shown, value)) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


# --- attacks ------------------------------------------------------------------------------------


def _attacks(policy: Policy, floor: Floor) -> Iterator[str]:
    for index, required in enumerate(floor.spec.attacks):
        same = [(i, a) for i, a in enumerate(policy.attacks) if a.name == required.name]
        if not same:
            yield (
                f"attacks: {required.name!r} is missing, but {floor.source} requires it "
                f"(its attacks[{index}]: {describe_attack(required)}); add it to the policy"
            )
            continue
        shortfalls = [(i, _shortfalls(attack, required)) for i, attack in same]
        if any(not found for _, found in shortfalls):
            continue
        i, found = shortfalls[0]
        yield (
            f"attacks[{i}] ({policy.attacks[i].label}): {found[0]}; {floor.source} requires "
            f"{describe_attack(required)}: set it so, or add that entry with another `id`"
        )


def _shortfalls(attack: AttackConfig, required: AttackConfig) -> list[str]:
    """How `attack` is weaker than the floor's entry: fewer models or query views, or any
    other setting that differs (the floor's author chose it; a variant is another entry)."""
    found = []
    for key in type(required).model_fields:
        if key in ("id", "name"):
            continue
        value, wanted = getattr(attack, key), getattr(required, key)
        if key == "queries":
            if not set(wanted.views) <= set(value.views):
                found.append(f"queries {len(value.views)} view(s) lack the floor's")
        elif key in AT_LEAST:
            if value < wanted:
                found.append(f"{key} {value} is fewer than the floor's {wanted}")
        elif value != wanted:
            found.append(f"{key} is {_shown(value)}, the floor's {_shown(wanted)}")
    return found


def describe_attack(attack: AttackConfig) -> str:
    """`lira (reference_models 8, mode offline, queries 2)`: the name and what differs from
    the attack's defaults."""
    fields = type(attack).model_fields
    defaults = {key: info.default for key, info in fields.items() if not info.is_required()}
    shown = []
    for key in type(attack).model_fields:
        if key in ("id", "name"):
            continue
        value = getattr(attack, key)
        if key == "queries":
            if len(value.views) > 1:
                shown.append(f"queries {len(value.views)}")
        elif key in AT_LEAST or value != defaults.get(key, value):
            shown.append(f"{key} {_shown(value)}")
    return attack.name + (f" ({', '.join(shown)})" if shown else "")


# --- gate ---------------------------------------------------------------------------------------


def _gate(policy: Policy, floor: Floor) -> Iterator[str]:
    ours = dict(policy.gate.limits())
    fields = _fields(policy.gate)
    for condition, limit in floor.spec.gate.limits():
        source = floor.origin(str(condition))
        field = fields.get(condition, condition.field)
        found = ours.get(condition)
        if found is None:
            yield (
                f"{field}: missing, but {source} requires the condition '{condition}' at "
                f"{limit.max:g} or stricter; add it to the policy's gate"
            )
            continue
        yield from _limit_problems(policy, field, condition, found, limit, source)


def _limit_problems(
    policy: Policy,
    field: str,
    condition: ConditionId,
    found: GateLimit,
    limit: GateLimit,
    source: str,
) -> Iterator[str]:
    if found.max > limit.max:
        yield (
            f"{field}: max {found.max:g} is looser than {source}; the policy may tighten the "
            f"floor but not loosen it: set it to {limit.max:g} or lower"
        )
    floor_statistic = getattr(limit, "statistic", "point")
    if floor_statistic == "upper" and getattr(found, "statistic", "point") != "upper":
        yield (
            f"{field}.statistic: is point, but {source} gates on the upper confidence bound "
            f"({describe_limit(condition.metric, limit)}); set statistic: upper"
        )
    if isinstance(limit, ClassAucLimit) and isinstance(found, ClassAucLimit):
        least = class_min_samples(limit)
        if class_min_samples(found) > least:
            yield (
                f"{field}.min_samples: {class_min_samples(found)} leaves classes ungated that "
                f"{source} gates (min_samples {least}); set it to {least} or lower"
            )
    yield from _scope_problems(policy, field, found, limit, source)
    for index, suppression in enumerate(policy.gate.suppressions):
        if suppression.matches(condition):
            yield (
                f"gate.suppressions[{index}]: waives '{condition}', which {source} does not "
                "let the policy waive; remove the suppression"
            )


def _scope_problems(
    policy: Policy, field: str, found: GateLimit, limit: GateLimit, source: str
) -> Iterator[str]:
    """A condition scoped to some attacks is laxer than the floor's, which covers them all
    (or the floor's own scope)."""
    wanted = limit.attacks
    for key, scope in ((f"{field}.attacks", found.attacks), ("gate.attacks", policy.gate.attacks)):
        if scope is None:
            continue
        covered = policy.attack_labels if wanted is None else wanted
        left_out = [label for label in covered if label not in scope]
        if left_out:
            what = "every attack" if wanted is None else f"attacks {', '.join(wanted)}"
            yield (
                f"{key}: leaves attack {left_out[0]!r} out of the condition, but {source} "
                f"applies to {what}; remove the scope"
            )
            return


def _fields(gate: GateSpec) -> dict[ConditionId, str]:
    """The policy key of each of the gate's conditions (`gate.max_tpr_at_fpr[1]`)."""
    fields: dict[ConditionId, str] = {}
    lists = {"tpr_at_fpr": 0}
    for condition, _ in gate.limits():
        if condition.metric in lists:
            fields[condition] = f"{condition.field}[{lists[condition.metric]}]"
            lists[condition.metric] += 1
        else:
            fields[condition] = condition.field
    return fields


# --- what a floor enforced, for result.json and the reports ----------------------------------


def floor_info(floor: Floor | None) -> FloorInfo | None:
    """What result.json records of the floor."""
    if floor is None:
        return None
    return FloorInfo(
        source=floor.source, path=floor.path, sha256=floor.sha256, enforced=enforced(floor)
    )


def enforced(floor: Floor) -> list[str]:
    """The floor's requirements in words, one line per section."""
    spec = floor.spec
    gate = "; ".join(
        describe_limit(condition.metric, limit) + _scope_text(limit.attacks)
        for condition, limit in spec.gate.limits()
    )
    stats = spec.statistics
    lines = [f"gate: {gate}, unwaivable"]
    if spec.attacks:
        lines.append("attacks: at least " + "; ".join(describe_attack(a) for a in spec.attacks))
    lines.append(
        f"statistics: confidence_level >= {stats.confidence_level:g}, min_false_positives >= "
        f"{stats.min_false_positives}, n_resamples >= {stats.n_resamples}, delta <= "
        f"{stats.delta:g}"
    )
    if spec.data.max_per_side is not None:
        lines.append(f"data: at least {spec.data.max_per_side} members and non-members")
    if spec.runtime.seed is not None:
        lines.append(f"runtime.seed: {spec.runtime.seed}")
    kind = spec.model.outputs
    lines.append(
        "model.outputs: "
        + ("" if kind == "auto" else f"{kind} or auto, and ")
        + "never weaker than what the model returns"
    )
    fit = spec.preconditions.reference_fit
    lines.append(f"preconditions: none relaxed; reference_fit {fit}")
    if spec.pinned_recipe:
        pinned = ", ".join(f"{k} {_shown(v)}" for k, v in spec.pinned_recipe.items())
        lines.append(f"reference_training pinned: {pinned}")
    return lines


def _scope_text(scope: tuple[str, ...] | None) -> str:
    return "" if scope is None else f" (attacks {', '.join(scope)})"
