"""The policy's `model:` and `preprocessing:` sections."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    model_validator,
)

from mia_audit.gate.dp_claim import DpClaim
from mia_audit.settings import JsonShorthand, PolicyPath, StrictModel


class ModelSpec(StrictModel):
    """The target model."""

    path: PolicyPath = Field(
        description="Model file: .onnx, or .pt/.pth (state dict or TorchScript)."
    )
    format: Literal["auto", "onnx", "torchscript", "state_dict", "pickle"] = Field(
        "auto", description="How to read `path`; `auto` decides from the file's content."
    )
    architecture: str | None = Field(
        None,
        description=(
            "For state dicts and reference models: a torchvision classifier name (e.g. resnet18)"
            " or a `module:function` factory (the only way a policy names code)."
        ),
    )
    num_classes: int | None = Field(None, ge=2, description="Number of classes (model outputs).")
    outputs: Literal["auto", "logits", "probabilities", "labels"] = Field(
        "auto",
        description=(
            "What the model returns: logits, probabilities (a softmax head) or labels (class "
            "indices or one-hot: an argmax head, or an API that shows only the label). `auto` "
            "decides from the probe batch; `labels` on a model that returns more audits what "
            "an attacker who sees only the predicted class learns."
        ),
    )
    cifar_stem: bool = Field(
        False, description="ResNet with a 3x3 stride-1 first conv, no max-pool."
    )
    allow_pickle: bool = Field(
        False, description="Allow loading a pickled full module (runs code from the file)."
    )
    dp_claim: DpClaim | None = Field(
        None,
        description=(
            "The (epsilon, delta)-DP guarantee the training claims: the gate fails when any "
            "epsilon lower bound exceeds it (docs/dp-claim.md)."
        ),
    )


def _size_pair(value: Any) -> Any:
    return [value, value] if isinstance(value, int) else value


class Preprocessing(StrictModel):
    """How images are turned into model input (pixels are first scaled to 0..1).

    Required: a silent mean 0 / std 1 default would audit a different model than the one that
    ships. `preprocessing: none` says the model normalises inside (mean 0, std 1).
    """

    mean: tuple[float, ...] = Field(
        min_length=1, max_length=4, description="Per-channel mean on the 0..1 scale."
    )
    std: tuple[Annotated[float, Field(gt=0)], ...] = Field(
        min_length=1, max_length=4, description="Per-channel standard deviation (0..1 scale)."
    )
    input_size: Annotated[
        tuple[int, int] | None,
        BeforeValidator(_size_pair),
        JsonShorthand({"type": "integer"}),
    ] = Field(None, description="Resize images to [height, width] (bilinear) when they differ.")
    channel_order: Literal["rgb", "bgr"] = Field(
        "rgb", description="Channel order the model expects."
    )

    @property
    def normalises(self) -> bool:
        """False for `preprocessing: none` (or an explicit mean 0 / std 1)."""
        return any(m != 0.0 for m in self.mean) or any(s != 1.0 for s in self.std)

    @model_validator(mode="after")
    def _same_length(self) -> Preprocessing:
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} values but std has {len(self.std)}")
        return self


#: What `preprocessing: none` stands for: the model normalises its input itself.
NO_NORMALISATION = {"mean": [0.0], "std": [1.0]}


def _preprocessing_shorthand(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() == "none":
        return dict(NO_NORMALISATION)
    if value is None:
        raise ValueError(
            "is empty; give mean and std (on the 0..1 scale), or `none` when the model "
            "normalises its input itself"
        )
    return value


PreprocessingEntry = Annotated[
    Preprocessing,
    BeforeValidator(_preprocessing_shorthand),
    JsonShorthand({"type": "string", "pattern": r"^\s*[Nn][Oo][Nn][Ee]\s*$"}),  # `none`
]
