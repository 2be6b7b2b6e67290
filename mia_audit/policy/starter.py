"""A commented starter policy for a model and its data (`mia-audit init`).

What can be read off the files is filled in: the model's format, its number of classes, a state
dict's architecture (the torchvision classifier whose parameter names and shapes it matches,
with or without the CIFAR stem), the image size, and the preprocessing among a few usual ones
under which the model classifies its members best. What cannot (the target's training recipe,
the thresholds) is written with the defaults and a comment saying how to choose; every guess
is marked REVIEW. The result is a valid policy: `mia-audit validate` passes on it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mia_audit.data.formats import load_image_set
from mia_audit.data.images import ImageSet
from mia_audit.errors import InputError

#: Torchvision classifiers a state dict is matched against (the CIFAR stem for the ResNets).
CANDIDATE_ARCHITECTURES = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "wide_resnet50_2",
    "resnext50_32x4d",
    "vgg11",
    "vgg11_bn",
    "vgg16",
    "vgg16_bn",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "densenet121",
    "convnext_tiny",
    "shufflenet_v2_x1_0",
)
#: Usual normalisations (0..1 scale), tried besides the members' own statistics and none.
KNOWN_NORMALISATIONS = {
    "CIFAR-10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "ImageNet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
#: The JSON Schema beside the policy, for editors (the first line of the starter names it).
SCHEMA_FILE = "policy.schema.json"
#: Members the preprocessing candidates are scored on.
PROBE_IMAGES = 256


@dataclass(frozen=True)
class StarterInputs:
    policy: Path
    model: Path
    members: Path
    non_members: Path
    population: Path | None = None


@dataclass(frozen=True)
class DetectedModel:
    format: str
    num_classes: int
    architecture: str | None
    cifar_stem: bool


@dataclass(frozen=True)
class Normalisation:
    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    accuracy: float


def starter_policy(inputs: StarterInputs) -> str:
    """The policy text for these files (InputError, exit 2, when a file cannot be read)."""
    members = load_image_set(inputs.members, allow_pickle=False, field="--members")
    non_members = load_image_set(inputs.non_members, allow_pickle=False, field="--non-members")
    if inputs.population is not None:
        load_image_set(inputs.population, allow_pickle=False, field="--population")
    model = detect_model(inputs.model, members)
    scored = score_normalisations(inputs.model, model, members)
    return _policy_text(inputs, model, members, non_members, scored)


# --- the model ------------------------------------------------------------------------------------


def detect_model(path: Path, members: ImageSet) -> DetectedModel:
    """Format, classes and (for a state dict) the architecture of the model file."""
    from mia_audit.models.loading import _find_state_dict, _torch_load, detect_format

    if not path.is_file():
        raise InputError(f"--model: {path}: file not found")
    model_format = detect_format(path)
    if model_format == "state_dict":
        state = _find_state_dict(_torch_load(path, allow_pickle=False), path)
        architecture, cifar_stem, num_classes = match_architecture(state)
        return DetectedModel(model_format, num_classes, architecture, cifar_stem)
    from mia_audit.models.inference import Preprocessor, run_batch
    from mia_audit.models.loading import load_target
    from mia_audit.models.settings import ModelSpec

    classifier = load_target(ModelSpec(path=path), "cpu").classifier
    channels = members.image_shape[0]
    plain = Preprocessor((0.0,) * channels, (1.0,) * channels)
    logits = run_batch(classifier, plain(members.images[:2]))
    return DetectedModel(model_format, int(logits.shape[1]), None, False)


def match_architecture(state: Mapping[str, Any]) -> tuple[str, bool, int]:
    """The candidate torchvision architecture whose parameters have exactly the state dict's
    names and shapes (built on the meta device: nothing is allocated)."""
    import torch

    from mia_audit.models.architectures import build_architecture
    from mia_audit.models.loading import infer_num_classes

    num_classes = infer_num_classes(state)
    if num_classes is None:
        raise InputError("--model: cannot tell the number of classes from the state dict")
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    for name in CANDIDATE_ARCHITECTURES:
        stems = (False, True) if name.startswith(("resnet", "wide_", "resnext")) else (False,)
        for cifar_stem in stems:
            with torch.device("meta"):
                module = build_architecture(name, num_classes, cifar_stem=cifar_stem)
            built = {key: tuple(value.shape) for key, value in module.state_dict().items()}
            if built == shapes:
                return name, cifar_stem, num_classes
    raise InputError(
        "--model: the state dict matches none of the usual torchvision classifiers "
        f"({', '.join(CANDIDATE_ARCHITECTURES[:4])}, ...); write model.architecture yourself "
        "(a torchvision name or a 'module:function' factory), or export the model to ONNX"
    )


# --- the preprocessing --------------------------------------------------------------------------


def score_normalisations(
    path: Path, model: DetectedModel, members: ImageSet
) -> list[Normalisation]:
    """The model's accuracy on a sample of its members under each candidate normalisation,
    best first: the one it was trained with classifies its own training data best."""
    from mia_audit.data.images import as_float01
    from mia_audit.models.inference import Preprocessor, run_batch
    from mia_audit.models.loading import load_target
    from mia_audit.models.settings import ModelSpec

    spec = ModelSpec(
        path=path,
        architecture=model.architecture,
        num_classes=model.num_classes,
        cifar_stem=model.cifar_stem,
    )
    classifier = load_target(spec, "cpu").classifier
    images = members.images[:PROBE_IMAGES]
    labels = members.labels[:PROBE_IMAGES]
    channels = images.shape[1]
    pixels = as_float01(images)
    own_mean = tuple(round(float(v), 4) for v in pixels.mean(axis=(0, 2, 3)))
    own_std = tuple(round(max(float(v), 1e-3), 4) for v in pixels.std(axis=(0, 2, 3)))
    candidates = {"the members' own statistics": (own_mean, own_std)}
    if channels in (1, 3):
        candidates |= {
            name: (mean[:channels], std[:channels])
            for name, (mean, std) in KNOWN_NORMALISATIONS.items()
        }
    candidates["none"] = ((0.0,) * channels, (1.0,) * channels)
    scored = []
    for name, (mean, std) in candidates.items():
        try:
            logits = run_batch(classifier, Preprocessor(mean, std)(images))
        except Exception:  # a candidate the model cannot take (a wrong channel count)
            continue
        accuracy = float((logits.argmax(axis=1) == labels).mean())
        scored.append(Normalisation(name, tuple(mean), tuple(std), accuracy))
    if not scored:
        raise InputError(f"--model: {path}: the model runs on none of the members' images")
    return sorted(scored, key=lambda item: -item.accuracy)


# --- the text -------------------------------------------------------------------------------------


def _relative(path: Path, folder: Path) -> str:
    return os.path.relpath(path, folder)


def _numbers(values: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{value:g}" for value in values) + "]"


def _policy_text(
    inputs: StarterInputs,
    model: DetectedModel,
    members: ImageSet,
    non_members: ImageSet,
    scored: list[Normalisation],
) -> str:
    folder = inputs.policy.parent
    best = scored[0]
    channels, height, width = members.image_shape
    labels = np.concatenate([members.labels, non_members.labels])
    classes_seen = len(np.unique(labels))
    lines = [
        f"# yaml-language-server: $schema={SCHEMA_FILE}",
        f"# (completion and checks in editors; {SCHEMA_FILE} is `mia-audit schema`'s output)",
        f"# Starter policy written by `mia-audit init` for {model.format} model "
        f"{_relative(inputs.model, folder)}.",
        "# Review every line marked REVIEW, then: mia-audit validate / plan / run this file.",
        "version: 1",
        f"name: {inputs.policy.stem}",
        "model:",
        f"  path: {_relative(inputs.model, folder)}   # detected format: {model.format}",
        f"  num_classes: {model.num_classes}   # the model's outputs ({classes_seen} classes "
        "seen in the data)",
    ]
    if model.architecture is not None:
        lines.append(
            f"  architecture: {model.architecture}   # the state dict's names and shapes match "
            "this torchvision classifier"
        )
        lines.append(f"  cifar_stem: {str(model.cifar_stem).lower()}")
    else:
        lines.append(
            "  # architecture: resnet18   # REVIEW: needed only by lira, rmia and shadow (what "
            "reference models are built from)"
        )
    lines += [
        "data:",
        f"  members: {_relative(inputs.members, folder)}   # {len(members)} images, "
        f"{channels}x{height}x{width}",
        f"  non_members: {_relative(inputs.non_members, folder)}   # {len(non_members)} images",
    ]
    if inputs.population is not None:
        lines.append(
            f"  population: {_relative(inputs.population, folder)}   # for reference models"
        )
    lines += _preprocessing_lines(best, scored)
    lines += [
        "attacks:   # the target-only suite; docs/attacks.md has lira, rmia and shadow",
        "  - loss",
        "  - confidence",
        "  - entropy",
        "  - modified_entropy",
        "  - {name: logit_margin, queries: 2}",
        "  - class_threshold",
        "  - {name: learned, model: gradient_boosting}",
    ]
    if model.architecture is not None:
        lines += [
            "  # - {name: lira, reference_models: 4}   # trains models with reference_training",
            "  # - {name: rmia, reference_models: 4}",
        ]
    lines += _recipe_lines()
    lines += [
        "gate:",
        "  # REVIEW: thresholds. AUC 0.5 is chance; a target-only attack near 0.6 already",
        "  # means the model's confidence gives its members away. TPR at a low FPR says how many",
        "  # members an attacker identifies with few false alarms (docs/thresholds.md).",
        "  # Start from a pass on a model trained with your regularisation, then tighten.",
        "  max_auc: 0.6",
        "  max_tpr_at_fpr:",
        "    - {fpr: 0.05, max: 0.1}   # needs 200 non-members (min_false_positives / fpr)",
        "outputs:",
        "  dir: mia-report",
        "runtime:",
        "  device: auto",
        "  seed: 0",
        "  # max_minutes: 60   # refuse a run that `mia-audit plan` estimates at longer",
    ]
    return "\n".join(lines) + "\n"


def _preprocessing_lines(best: Normalisation, scored: list[Normalisation]) -> list[str]:
    tried = "; ".join(f"{item.name} {item.accuracy:.2f}" for item in scored)
    lines = [
        "# REVIEW: the normalisation the model was trained with. Chosen as the one under which",
        f"# it classifies its members best (accuracy on {PROBE_IMAGES} members: {tried}).",
    ]
    if best.name == "none":
        return [*lines, "preprocessing: none   # the model normalises its input itself"]
    return [
        *lines,
        f"preprocessing:   # {best.name}",
        f"  mean: {_numbers(best.mean)}",
        f"  std: {_numbers(best.std)}",
    ]


def _recipe_lines() -> list[str]:
    return [
        "reference_training:   # REVIEW: copy the target's training recipe here (lira, rmia, "
        "shadow train models with it)",
        "  epochs: 20",
        "  batch_size: 256",
        "  optimizer: sgd   # sgd | adamw",
        "  lr: 0.1",
        "  weight_decay: 0.0005",
        "  augment: [flip, crop]   # what the target trained with; [] for none",
    ]
