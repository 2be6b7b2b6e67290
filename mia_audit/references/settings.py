"""The policy's `reference_training:` section: the recipe reference and shadow models copy from
the target (the model cache keys it, with the trainer's version).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

from mia_audit.models.settings import ModelSpec
from mia_audit.settings import StrictModel

if TYPE_CHECKING:
    pass


TRAINER_VERSION = 1

Augmentation = Literal["flip", "crop"]


class TrainingRecipe(BaseModel):
    """How reference (and shadow) models are trained: copy the target's recipe."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    architecture: str | None = Field(
        None,
        description=(
            "torchvision classifier name or `module:function` factory. Default: "
            "model.architecture (required when the target is ONNX or TorchScript)."
        ),
    )
    cifar_stem: bool | None = Field(None, description="Default: model.cifar_stem.")
    epochs: int = Field(20, ge=1, le=1000, description="Passes over each model's training set.")
    batch_size: int = Field(256, ge=1, description="Training batch size.")
    optimizer: Literal["sgd", "adamw"] = Field(
        "sgd", description="sgd (Nesterov momentum) or adamw."
    )
    lr: float = Field(0.1, gt=0, description="Peak learning rate.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (sgd only).")
    weight_decay: float = Field(5e-4, ge=0, description="L2 weight decay.")
    schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="Learning-rate schedule over all steps."
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Cross-entropy label smoothing.")
    augment: tuple[Augmentation, ...] = Field(
        ("flip", "crop"), description="Training augmentation: flip, crop (pad and random crop)."
    )
    crop_padding: int = Field(4, ge=0, le=16, description="Padding of the random crop, pixels.")
    train_size: int | None = Field(
        None, ge=2, description="Samples per reference model. Default: the number of members."
    )
    threads: int = Field(
        1,
        ge=1,
        le=256,
        description=(
            "torch CPU threads each model trains with, on every executor (local, Ray at any "
            "cpus_per_task): the count changes float rounding, so it is part of the recipe."
        ),
    )

    def cache_key(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json"), "trainer": TRAINER_VERSION}


class ReferenceTraining(TrainingRecipe, StrictModel):
    """How reference and shadow models are trained: copy the target's recipe as closely as
    you know it (mismatched augmentation is the largest known loss of attack power).

    Unset `architecture`, `cifar_stem` and `train_size` default to model.architecture,
    model.cifar_stem and the number of members; `resolve` fills them in.
    """

    def resolve(self, model: ModelSpec, n_members: int) -> TrainingRecipe:
        """The concrete recipe (every default filled in), as the model cache keys it."""
        values = self.model_dump()
        values["architecture"] = self.architecture or model.architecture
        values["cifar_stem"] = model.cifar_stem if self.cifar_stem is None else self.cifar_stem
        values["train_size"] = self.train_size or n_members
        return TrainingRecipe.model_validate(values)
