"""The built-in demo: a deliberately overfit ResNet18 on scikit-learn's digits, and its audit.

Digits ship with scikit-learn (no download): 1,797 8x8 grey images, upscaled to 32x32 RGB.
A seeded pool of 2 x `n_members` digits is split in halves: the target trains on one (the
members), the other is held out (the non-members); the remaining digits are population data
for reference models. The folder gets the model as a state dict and as ONNX, the data as .npz,
and a policy; a second run reuses the trained target when its recipe and data are unchanged.

The size is set by the CPU: a ResNet18 trains at ~75 images/s on the 2-core machines this
project targets, so 250 members x 12 epochs keep the demo near a minute.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mia_audit.progress import Advance
from mia_audit.references.settings import TrainingRecipe
from mia_audit.references.training import TrainingData, TrainingJob, train_models
from mia_audit.store.atomic import atomic_write_bytes, atomic_write_text
from mia_audit.store.hashing import arrays_sha256, file_sha256

StageFactory = Callable[[str, int], Any]

DIGITS_MEAN = (0.2, 0.2, 0.2)
DIGITS_STD = (0.3, 0.3, 0.3)
MARKER = "demo.json"


@dataclass(frozen=True)
class DemoOptions:
    directory: Path
    image_size: int = 32
    n_members: int = 250
    epochs: int = 12
    seed: int = 0
    architecture: str = "resnet18"

    def recipe(self) -> TrainingRecipe:
        """Deliberately overfit: no augmentation, no weight decay, a high learning rate."""
        return TrainingRecipe(
            architecture=self.architecture,
            epochs=self.epochs,
            batch_size=64,
            optimizer="adamw",
            lr=1e-3,
            weight_decay=0.0,
            schedule="cosine",
            augment=(),
        )


def digits_images(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 RGB (N, size, size, 3) and labels (N,)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = np.clip(digits.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    resized = np.stack(
        [
            np.asarray(
                Image.fromarray(image).resize((image_size, image_size), Image.Resampling.BILINEAR)
            )
            for image in grey
        ]
    )
    return np.repeat(resized[..., None], 3, axis=-1), digits.target.astype(np.int64)


def split_demo(n: int, n_members: int, seed: int) -> dict[str, np.ndarray]:
    """Rows of members, non-members (same size) and population (the rest), seeded."""
    if 2 * n_members > n:
        raise ValueError(f"n_members={n_members} needs {2 * n_members} digits; there are {n}")
    order = np.random.default_rng(seed).permutation(n)
    return {
        "members": np.sort(order[:n_members]),
        "non_members": np.sort(order[n_members : 2 * n_members]),
        "population": np.sort(order[2 * n_members :]),
    }


def prepare_demo(options: DemoOptions, stage: StageFactory) -> tuple[Path, bool]:
    """Write (or reuse) the demo folder; return the policy path and whether it trained."""
    directory = options.directory
    directory.mkdir(parents=True, exist_ok=True)
    images, labels = digits_images(options.image_size)
    parts = split_demo(len(labels), options.n_members, options.seed)
    members = parts["members"]
    fingerprint = {
        "recipe": options.recipe().cache_key(),
        "data": arrays_sha256(images, labels, members),
        "seed": options.seed,
        "image_size": options.image_size,
    }
    trained = not _reusable(directory, fingerprint)
    if trained:
        _write_data(directory, images, labels, parts)
        with stage("training the demo target (ResNet18)", options.epochs * len(members)) as advance:
            state = _train_target(options, images[members], labels[members], advance)
        _write_models(directory, state, options)
        marker = {**fingerprint, "files": _file_hashes(directory)}
        atomic_write_text(directory / MARKER, json.dumps(marker, indent=2) + "\n")
    policy = directory / "policy.yaml"
    atomic_write_text(policy, demo_policy_text("target.onnx"))
    atomic_write_text(directory / "policy-state-dict.yaml", demo_policy_text("target.pt"))
    return policy, trained


_DEMO_FILES = ("members.npz", "non_members.npz", "population.npz", "target.pt", "target.onnx")


def _file_hashes(directory: Path) -> dict[str, str]:
    return {name: file_sha256(directory / name) for name in _DEMO_FILES}


def _reusable(directory: Path, fingerprint: dict[str, Any]) -> bool:
    try:
        marker = json.loads((directory / MARKER).read_text())
        files = marker.pop("files")
        return bool(
            marker == json.loads(json.dumps(fingerprint)) and files == _file_hashes(directory)
        )
    except (OSError, ValueError, KeyError, AttributeError):
        return False


def _write_data(
    directory: Path, images: np.ndarray, labels: np.ndarray, parts: dict[str, np.ndarray]
) -> None:
    for name, index in parts.items():
        atomic_write_bytes(
            directory / f"{name}.npz", _npz_bytes(images[index], labels[index], index)
        )


def _npz_bytes(images: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    ids = np.array([f"digits:{row}" for row in rows])
    np.savez_compressed(buffer, x=images, y=labels, ids=ids)
    return buffer.getvalue()


def _train_target(
    options: DemoOptions, images: np.ndarray, labels: np.ndarray, advance: Advance
) -> dict[str, Any]:
    from mia_audit.models.architectures import build_architecture

    data = TrainingData(images.transpose(0, 3, 1, 2).copy(), labels, DIGITS_MEAN, DIGITS_STD)
    job = TrainingJob(index=np.arange(len(labels)), seed=options.seed)
    (state,) = train_models(
        lambda: build_architecture(options.architecture, 10),
        data,
        [job],
        options.recipe(),
        "cpu",
        advance=advance,
    )
    return state


def _write_models(directory: Path, state: dict[str, Any], options: DemoOptions) -> None:
    import io

    import torch

    from mia_audit.models.architectures import build_architecture

    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(directory / "target.pt", buffer.getvalue())
    model = build_architecture(options.architecture, 10)
    model.load_state_dict(state)
    export_onnx(model.eval(), directory / "target.onnx", options.image_size)


def export_onnx(model: Any, path: Path, image_size: int, channels: int = 3) -> None:
    """Export with a dynamic batch dimension (TorchScript-based exporter, no extra deps)."""
    import tempfile
    import warnings

    import torch

    example = torch.zeros(2, channels, image_size, image_size)
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        temporary = Path(scratch) / "model.onnx"
        torch.onnx.export(
            model,
            (example,),
            str(temporary),
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
        atomic_write_bytes(path, temporary.read_bytes())


def demo_policy_text(model_file: str) -> str:
    return f"""\
# mia-audit demo policy: a ResNet18 deliberately overfit on scikit-learn's digits.
version: 1
name: digits-resnet18-demo
model:
  path: {model_file}
  architecture: resnet18
  num_classes: 10
data:
  members: members.npz
  non_members: non_members.npz
  population: population.npz
  class_names: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
preprocessing:
  mean: {list(DIGITS_MEAN)}
  std: {list(DIGITS_STD)}
attacks:
  - loss
  - confidence
  - entropy
  - modified_entropy
  - logit_margin
  - name: logit_margin
    id: logit_margin_mirror
    queries: 2
  - class_threshold
  - name: learned
    model: gradient_boosting
gate:
  max_auc: 0.60
  max_tpr_at_fpr:
    - {{fpr: 0.05, max: 0.10}}
outputs:
  dir: report
  formats: [json, html, markdown, junit]
runtime:
  device: auto
  seed: 0
  cache_dir: .mia-cache
"""
