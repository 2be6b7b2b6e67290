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


class DpRecipe(BaseModel):
    """DP-SGD (opacus, the `dp` extra) for the one-run audit of the recipe: one model trained
    on `train_size` population samples plus canaries, each included with probability 1/2
    (docs/dp-claim.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    noise_multiplier: float = Field(
        ge=0, le=100, description="Gaussian noise std over the clipping norm (0: no noise)."
    )
    max_grad_norm: float = Field(gt=0, description="Per-sample gradient clipping norm.")
    sampling: Literal["poisson"] = Field(
        "poisson", description="Batch sampling: poisson (what the accountant assumes)."
    )
    canaries: int = Field(
        500, ge=10, description="m: canaries drawn from the population, each included w.p. 1/2."
    )
    canary_kind: Literal["mislabelled", "natural"] = Field(
        "mislabelled",
        description="mislabelled: a random other class (the strongest input-space canary); "
        "natural: the population's own labels.",
    )


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
    dp: DpRecipe | None = Field(
        None,
        description="Train with DP-SGD and audit the recipe in one run (needs population data "
        "and `pip install 'mia-audit[dp]'`; docs/dp-claim.md).",
    )

    def cache_key(self) -> dict[str, Any]:
        # A recipe without `dp` keeps the key it had before the field existed.
        values = self.model_dump(mode="json", exclude={"dp"} if self.dp is None else set())
        return {**values, "trainer": TRAINER_VERSION}


#: The default epochs grid of the calibration pilot, as factors of the recipe's epochs.
EPOCH_FACTORS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)


class CalibrationGrid(BaseModel):
    """`reference_training.calibration`: the knobs the calibration pilot searches, its
    tolerance and its budget (docs/calibration.md). Unset grids derive from the recipe."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    epochs: tuple[int, ...] | None = Field(
        None,
        min_length=1,
        description="Epoch counts to try. Default: the recipe's epochs x 1/4, 1/2, 3/4, 1, "
        "3/2, 2, 3 and 4.",
    )
    weight_decay: tuple[float, ...] | None = Field(
        None,
        min_length=1,
        description="Weight decays to try. Default: 0, the recipe's and 10 x the recipe's "
        "(0, 5e-4 and 5e-3 when the recipe has none).",
    )
    augment: tuple[tuple[Augmentation, ...], ...] | None = Field(
        None,
        min_length=1,
        description="Augmentations to try. Default: none, and the recipe's (flip and crop "
        "when the recipe has none).",
    )
    tolerance: float = Field(
        0.05,
        gt=0,
        le=1,
        description="A candidate matches when its training and held-out accuracy and its mean "
        "true-class confidence (clipped log-odds over 10) on each side are each within this "
        "of the target's on members and non-members.",
    )
    max_models: int = Field(
        4,
        ge=1,
        le=64,
        description="The pilot's budget: candidate recipes it trains a model of (the chosen "
        "one is the run's first reference model, so it costs at most max_models - 1 extra).",
    )

    def epochs_of(self, recipe: TrainingRecipe) -> tuple[int, ...]:
        if self.epochs is not None:
            return tuple(sorted(set(self.epochs)))
        base = recipe.epochs
        return tuple(sorted({max(1, round(base * f)) for f in EPOCH_FACTORS}))

    def weight_decays_of(self, recipe: TrainingRecipe) -> tuple[float, ...]:
        if self.weight_decay is not None:
            return tuple(sorted(set(self.weight_decay)))
        base = recipe.weight_decay
        return (0.0, 5e-4, 5e-3) if base == 0 else (0.0, base, 10 * base)

    def augments_of(self, recipe: TrainingRecipe) -> tuple[tuple[Augmentation, ...], ...]:
        """Augmentations from least to most (by how many are on), duplicates dropped."""
        options = (
            self.augment if self.augment is not None else ((), recipe.augment or ("flip", "crop"))
        )
        distinct = {tuple(sorted(set(option))): None for option in options}
        return tuple(sorted(distinct, key=lambda option: (len(option), option)))


class ReferenceTraining(TrainingRecipe, StrictModel):
    """How reference and shadow models are trained: copy the target's recipe as closely as
    you know it (mismatched augmentation is the largest known loss of attack power), or let
    `calibrate` find the epochs, weight decay and augmentation that reproduce the target's fit.

    Unset `architecture`, `cifar_stem` and `train_size` default to model.architecture,
    model.cifar_stem and the number of members; `resolve` fills them in.
    """

    calibrate: bool = Field(
        False,
        description="Before training the reference models, run a budgeted pilot that picks "
        "the epochs, weight decay and augmentation (from `calibration`) whose models match the "
        "target's accuracy on members and non-members (docs/calibration.md).",
    )
    calibration: CalibrationGrid = Field(
        default_factory=CalibrationGrid,
        description="The calibration pilot's grid, tolerance and budget.",
    )

    def resolve(self, model: ModelSpec, n_members: int) -> TrainingRecipe:
        """The concrete recipe (every default filled in), as the model cache keys it."""
        values = self.model_dump(exclude={"calibrate", "calibration"})
        values["architecture"] = self.architecture or model.architecture
        values["cifar_stem"] = model.cifar_stem if self.cifar_stem is None else self.cifar_stem
        values["train_size"] = self.train_size or n_members
        return TrainingRecipe.model_validate(values)
