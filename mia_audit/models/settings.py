"""The policy's `model:` and `preprocessing:` sections."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    StringConstraints,
    model_validator,
)

from mia_audit.gate.dp_claim import DpClaim
from mia_audit.settings import JsonShorthand, PolicyPath, StrictModel

#: `models:/NAME/VERSION`, `models:/NAME@ALIAS` or `runs:/RUN_ID/PATH` (docs/mlflow.md).
REGISTRY_URI_PATTERN = r"^(models:/[^/@\s]+(/[0-9]+|@[A-Za-z0-9_\-]+)|runs:/[0-9A-Za-z]+/\S+)$"
RegistryUri = Annotated[str, StringConstraints(pattern=REGISTRY_URI_PATTERN)]


def _uri_shape(value: Any) -> Any:
    """A `models:/` or `runs:/` value that is not a valid URI is an error, not a file name."""
    if isinstance(value, str) and value.strip().startswith(("models:", "runs:")):
        value = value.strip()
        if not re.match(REGISTRY_URI_PATTERN, value):
            raise ValueError(
                f"{value!r} is not an MLflow model URI; give models:/NAME/VERSION, "
                "models:/NAME@ALIAS or runs:/RUN_ID/PATH"
            )
    return value


class MlflowSource(StrictModel):
    """Where a `models:/` or `runs:/` model.path is resolved (docs/mlflow.md)."""

    tracking_uri: str | None = Field(
        None,
        min_length=1,
        description="MLflow tracking server (default: the MLFLOW_TRACKING_URI variable).",
    )


class ModelSpec(StrictModel):
    """The target model."""

    path: Annotated[RegistryUri | PolicyPath, BeforeValidator(_uri_shape)] = Field(
        union_mode="left_to_right",
        description="Model file: .onnx, .safetensors, or .pt/.pth (state dict or TorchScript); "
        "or an MLflow URI: models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID/PATH.",
    )
    mlflow: MlflowSource | None = Field(
        None, description="The MLflow tracking server for a models:/ or runs:/ model.path."
    )
    format: Literal["auto", "onnx", "torchscript", "state_dict", "safetensors", "pickle"] = Field(
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

    @property
    def is_registry(self) -> bool:
        """Whether `path` is an MLflow URI rather than a file."""
        return isinstance(self.path, str)

    @property
    def file(self) -> Path:
        """The model file (a registry URI is downloaded and replaced by its file first)."""
        if isinstance(self.path, str):
            raise TypeError(f"{self.path} is an MLflow URI; download it first")
        return self.path

    @property
    def display_name(self) -> str:
        """The file's name, or the URI, for messages."""
        return self.path if isinstance(self.path, str) else self.path.name


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
