"""The gate floor's options: limits from the workflow file that the policy may tighten but never
loosen (`--floor-max-auc`, `--floor-max-tpr-at-fpr`; the action's `max-auc`, `max-tpr-at-fpr`).

In CI the policy usually lives in the repository, so a pull request can edit it: raise
`gate.max_auc` to 0.99, scope a condition to one weak attack, or waive it. The floor comes from
somewhere the pull request does not control (the workflow's `with:` inputs, or
`mia-audit run --floor-max-auc`), and the run is refused (exit 2) unless the policy's gate has,
for every floor, a condition at least as strict that applies to every attack and that no
suppression can waive. The policy stays the one source of the verdict: the floor only decides
whether that policy may be used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mia_audit.errors import PolicyError
from mia_audit.evaluation.metrics import fpr_key
from mia_audit.policy.schema import Policy


@dataclass(frozen=True)
class TprFloor:
    fpr: float
    max: float

    @property
    def option(self) -> str:
        return f"--floor-max-tpr-at-fpr {self.fpr:g}:{self.max:g}"


@dataclass(frozen=True)
class GateFloor:
    """The workflow's limits: AUC, and TPR at given FPRs."""

    max_auc: float | None = None
    max_tpr_at_fpr: tuple[TprFloor, ...] = ()

    def __bool__(self) -> bool:
        return self.max_auc is not None or bool(self.max_tpr_at_fpr)

    def describe(self) -> str:
        parts = [] if self.max_auc is None else [f"AUC <= {self.max_auc:g}"]
        parts += [f"TPR at FPR {t.fpr:g} <= {t.max:g}" for t in self.max_tpr_at_fpr]
        return "; ".join(parts)


def parse_floor(max_auc: float | None, max_tpr_at_fpr: Sequence[str]) -> GateFloor:
    """The floor from the command line; a malformed value is exit 2 naming the option."""
    if max_auc is not None and not 0.0 <= max_auc <= 1.0:
        raise PolicyError(f"--floor-max-auc: {max_auc:g} is not an AUC; give a number in 0..1")
    tpr = tuple(_tpr_floor(text) for text in max_tpr_at_fpr)
    fprs = [fpr_key(t.fpr) for t in tpr]
    repeated = next((key for key in fprs if fprs.count(key) > 1), None)
    if repeated is not None:
        raise PolicyError(f"--floor-max-tpr-at-fpr: FPR {repeated} is given twice; give it once")
    return GateFloor(max_auc, tpr)


def _tpr_floor(text: str) -> TprFloor:
    fpr_text, separator, max_text = text.strip().partition(":")
    try:
        fpr, limit = float(fpr_text), float(max_text)
    except ValueError:
        fpr, limit = float("nan"), float("nan")
    if not separator or not (0.0 < fpr < 1.0 and 0.0 <= limit <= 1.0):
        raise PolicyError(
            f"--floor-max-tpr-at-fpr: {text!r} is not FPR:MAX; give e.g. 0.05:0.1 "
            "(FPR between 0 and 1, MAX in 0..1)"
        )
    return TprFloor(fpr, limit)


def check_floor(policy: Policy, floor: GateFloor) -> None:
    """Raise PolicyError (exit 2) unless the policy's gate is at least as strict as `floor`
    and the policy relaxes none of the checks made before a verdict: the rules of a floor
    file (`floor_rules`) for the floor these options build."""
    from mia_audit.policy.floor_file import with_gate_options
    from mia_audit.policy.floor_rules import check_against_floor

    check_against_floor(policy, with_gate_options(None, floor))
