"""The Python API: an audit from objects (a model and arrays) or from a policy file.

    import mia_audit

    outcome = mia_audit.audit(
        model,                                  # a torch.nn.Module, or a model file path
        members=(x_train, y_train),             # numpy arrays or torch tensors
        non_members=(x_test, y_test),
        preprocessing={"mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26]},
        attacks=["loss", "confidence", {"name": "learned", "model": "logistic_regression"}],
        gate={"max_auc": 0.6},
    )
    outcome.passed, outcome.attack("loss").auc, outcome.scores["loss"]
    outcome                                     # in Jupyter: the HTML report

The same pipeline as `mia-audit run` (`mia_audit.pipeline.run.audit`) and the same figures for
the same inputs. Every section of a policy can be given as a Python value, validated exactly as
the YAML form (docs/policy.md), and the same preconditions apply; errors are the tool's own
exceptions (`mia_audit.errors`), each with the exit code the CLI would return.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mia_audit.data.images import ImageSet, make_image_set
from mia_audit.errors import InputError
from mia_audit.gate.evaluate import utc_today
from mia_audit.models.loading import LoadedModel, load_target
from mia_audit.models.settings import ModelSpec
from mia_audit.pipeline.inputs import AuditInputs, LoadedSets
from mia_audit.pipeline.run import AuditOutcome, inputs_from_policy
from mia_audit.pipeline.run import audit as run_pipeline
from mia_audit.policy.loading import LoadedPolicy, load_policy, parse_policy, with_overrides
from mia_audit.progress import Progress
from mia_audit.result import AttackResult, DataSource, PolicyInfo, Result
from mia_audit.store.hashing import arrays_sha256, json_sha256

if TYPE_CHECKING:
    from torch import nn

    from mia_audit.policy.floor_file import Floor

#: Data as the API takes it: (images, labels) or (images, labels, ids); numpy arrays or torch
#: tensors; images (N, H, W, C) uint8 or (N, C, H, W) float, as in an .npz file.
Samples = tuple[Any, Any] | tuple[Any, Any, Any]
#: What `audit` runs without an `attacks` argument: every attack that needs only the target.
DEFAULT_ATTACKS = ("loss", "confidence", "entropy", "modified_entropy", "logit_margin")


@dataclass(frozen=True)
class AuditResult:
    """An audit's `Result` (what result.json holds) plus the per-sample scores.

    `scores[attack_id][i]` is sample i's membership score (higher: more likely a member);
    `is_member`, `labels` and `ids` describe the same samples, members first.
    """

    result: Result
    scores: Mapping[str, np.ndarray]
    is_member: np.ndarray
    labels: np.ndarray
    ids: np.ndarray

    @property
    def passed(self) -> bool:
        return self.result.passed

    @property
    def exit_code(self) -> int:
        """What `mia-audit run` would exit with: 0 pass, 1 a gate condition failed."""
        return self.result.exit_code

    @property
    def attacks(self) -> list[AttackResult]:
        return self.result.attacks

    def attack(self, attack_id: str) -> AttackResult:
        """One attack's figures (AUC, TPR at FPR, CIs, epsilon bound, slices) by its id."""
        return self.result.attack(attack_id)

    def to_json(self) -> str:
        return self.result.to_json()

    def to_html(self) -> str:
        """The self-contained HTML report (what report.html holds)."""
        from mia_audit.reports import report_format

        return report_format("html").render(self.result).decode("utf-8")

    def write(self, directory: str | os.PathLike[str], formats: Sequence[str] = ()) -> list[Path]:
        """Write the reports (default: json, html, markdown) into `directory`, as one set."""
        from mia_audit.reports import render_reports, write_reports

        chosen = list(formats) or ["json", "html", "markdown"]
        return write_reports(render_reports(self.result, chosen), Path(directory))

    def _repr_html_(self) -> str:
        """Jupyter shows the report in a sandboxed frame, so its styles stay its own."""
        page = html.escape(self.to_html(), quote=True)
        return (
            f'<iframe srcdoc="{page}" sandbox style="width:100%;height:760px;border:0" '
            'title="mia-audit report"></iframe>'
        )


def audit(
    model: nn.Module | str | os.PathLike[str],
    members: Samples,
    non_members: Samples,
    *,
    preprocessing: Mapping[str, Any] | str,
    gate: Mapping[str, Any],
    attacks: Sequence[str | Mapping[str, Any]] = DEFAULT_ATTACKS,
    population: Samples | None = None,
    architecture: str | None = None,
    num_classes: int | None = None,
    cifar_stem: bool = False,
    class_names: Sequence[str] | None = None,
    name: str = "python-audit",
    sections: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    today: date | None = None,
) -> AuditResult:
    """Audit `model` on the given members and non-members.

    `model` is a `torch.nn.Module` (put in eval mode and moved to the run's device) or the path
    of a model file (`.onnx`, TorchScript, or a state dict with `architecture`). `architecture`
    also names what reference models are built from (lira, rmia, shadow): a torchvision name
    or a `module:function` factory. `sections` gives any other policy section as a mapping
    (`reference_training`, `statistics`, `runtime`, `preconditions`, `outputs`, and
    `data` options such as `max_per_side`). `today` pins the date waivers expire against.
    """
    document = {
        "version": 1,
        "name": name,
        "model": _model_section(model, architecture, num_classes, cifar_stem),
        "data": {
            **dict((sections or {}).get("data", {})),
            "members": "python:members",
            "non_members": "python:non_members",
            **({"population": "python:population"} if population is not None else {}),
            **({"class_names": list(class_names)} if class_names is not None else {}),
        },
        "preprocessing": preprocessing,
        "attacks": list(attacks),
        "gate": dict(gate),
        **{key: value for key, value in (sections or {}).items() if key != "data"},
    }
    policy = parse_policy(document, base_dir=Path.cwd(), source="mia_audit.audit()")
    sets = {"members": members, "non_members": non_members, "population": population}
    inputs = AuditInputs(
        policy=policy,
        origin=PolicyInfo(
            name=name,
            path="(python)",
            sha256=json_sha256(_echo(document)),
            document=_echo(document),
        ),
        search_path=Path.cwd(),
        load_model=lambda device: _load_model(model, policy.model, device),
        load_sets=lambda: _image_sets(sets),
    )
    return _outcome(run_pipeline(inputs, progress, clock=_clock(today)))


def audit_policy(
    path: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
    today: date | None = None,
    **overrides: Any,
) -> AuditResult:
    """Run the audit a policy file describes, as `mia-audit run` does (without writing reports).

    `overrides` are the command line's: `output_dir`, `device`, `seed`, `formats`, `baseline`.
    """
    loaded = load_policy(Path(path))
    loaded.policy = with_overrides(loaded.policy, **overrides)
    return run_loaded(loaded, progress, today=today)


def run_loaded(
    loaded: LoadedPolicy,
    progress: Progress | None = None,
    *,
    today: date | None = None,
    floor: Floor | None = None,
) -> AuditResult:
    """Run a policy already loaded (and overridden): what the CLI's `run` and `demo` call;
    `floor` is the workflow's floor (docs/floor.md)."""
    inputs = inputs_from_policy(loaded, floor)
    return _outcome(run_pipeline(inputs, progress, clock=_clock(today)))


def _clock(today: date | None) -> Any:
    return utc_today if today is None else (lambda: today)


def _outcome(outcome: AuditOutcome) -> AuditResult:
    audit_set = outcome.audit_set
    return AuditResult(
        result=outcome.result,
        scores=outcome.scores,
        is_member=audit_set.is_member,
        labels=audit_set.labels,
        ids=audit_set.ids,
    )


def _model_section(
    model: object, architecture: str | None, num_classes: int | None, cifar_stem: bool
) -> dict[str, Any]:
    path = str(model) if isinstance(model, str | os.PathLike) else f"python:{type(model).__name__}"
    section: dict[str, Any] = {"path": path, "cifar_stem": cifar_stem}
    if architecture is not None:
        section["architecture"] = architecture
    if num_classes is not None:
        section["num_classes"] = num_classes
    return section


def _echo(document: Mapping[str, Any]) -> dict[str, Any]:
    """The policy as given, as JSON-able values (result.json echoes it)."""
    import json

    return dict(json.loads(json.dumps(document, default=str)))


def _load_model(model: object, spec: ModelSpec, device: str) -> LoadedModel:
    if isinstance(model, str | os.PathLike):
        return load_target(spec, device)
    from torch import nn

    if not isinstance(model, nn.Module):
        raise InputError(
            f"model: a {type(model).__name__} is not a model; give a torch.nn.Module or the "
            "path of a model file (.onnx, TorchScript, state dict)"
        )
    from mia_audit.models.classifier import TorchClassifier

    state = model.state_dict()
    weights = [state[key].detach().cpu().contiguous().numpy() for key in sorted(state)]
    digest = arrays_sha256(np.array(sorted(state)), *weights) if weights else "no-weights"
    classifier = TorchClassifier(model, device)
    return LoadedModel(classifier, "torch.nn.Module", digest, spec.architecture, None)


def _image_sets(given: Mapping[str, Samples | None]) -> LoadedSets:
    sets: dict[str, ImageSet] = {}
    sources: dict[str, DataSource] = {}
    for field, samples in given.items():
        if samples is None:
            continue
        image_set = _image_set(samples, field)
        sets[field] = image_set
        sources[field] = DataSource(
            path=f"python:{field}", sha256=image_set.sha256, n_samples=len(image_set)
        )
    return LoadedSets(sets["members"], sets["non_members"], sets.get("population"), sources, sets)


def _image_set(samples: Samples, field: str) -> ImageSet:
    if not isinstance(samples, tuple) or len(samples) not in (2, 3):
        raise InputError(f"{field}: give (images, labels) or (images, labels, ids)")
    images, labels, *ids = (_numpy(part) for part in samples)
    return make_image_set(
        images, labels, source=f"{field}", ids=ids[0] if ids else None
    ).with_id_prefix(field)


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        return np.asarray(value.detach().cpu().numpy())
    return np.asarray(value)
