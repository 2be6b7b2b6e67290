"""Load the target model named by the policy, whatever its format.

Formats: ONNX (onnxruntime), TorchScript, a state dict plus an architecture, and -- only with
`allow_pickle: true` -- a pickled full module. Untrusted files are never unpickled by default.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mia_audit.errors import InputError
from mia_audit.models.architectures import build_architecture, is_factory
from mia_audit.models.classifier import (
    AUTOCAST_DTYPES,
    Classifier,
    TorchClassifier,
    onnx_classifier,
)
from mia_audit.models.engine import EngineKey
from mia_audit.store.hashing import file_sha256

if TYPE_CHECKING:
    from torch import nn

    from mia_audit.models.settings import ModelSpec

FIELD = "model.path"
_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "net")


@dataclass(frozen=True)
class LoadedModel:
    classifier: Classifier
    format: str
    sha256: str
    architecture: str | None
    factory: str | None
    #: Inference precision (`at_precision` of the classifier): fp32 until the probe picks one.
    precision: str = "fp32"

    @property
    def engine_key(self) -> EngineKey:
        """Engine, device and precision: all three change the logits (part of cache keys)."""
        classifier = self.classifier
        autocast = AUTOCAST_DTYPES[self.precision] or "fp32"
        return EngineKey(classifier.engine, classifier.device, autocast)


def load_target(spec: ModelSpec, device: str, search_path: Path | None = None) -> LoadedModel:
    path = spec.path
    if not path.exists():
        raise InputError(
            f"{FIELD}: {path}: file not found; check the path (relative to the policy)"
        )
    if path.is_dir():
        raise InputError(f"{FIELD}: {path}: is a directory; expected a model file")
    model_format = detect_format(path) if spec.format == "auto" else spec.format
    digest = file_sha256(path)
    if model_format == "onnx":
        classifier: Classifier = onnx_classifier(str(path), device, FIELD)
    else:
        module = _torch_module(path, model_format, spec, search_path)
        classifier = TorchClassifier(module, device)
    factory = spec.architecture if spec.architecture and is_factory(spec.architecture) else None
    return LoadedModel(classifier, model_format, digest, spec.architecture, factory)


def detect_format(path: Path) -> str:
    """onnx by suffix; for torch archives, TorchScript if the archive holds code."""
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as error:
            raise InputError(f"{FIELD}: {path}: corrupt model archive ({error})") from None
        if any(name.endswith("constants.pkl") or "/code/" in name for name in names):
            return "torchscript"
    return "state_dict"


def _torch_module(
    path: Path, model_format: str, spec: ModelSpec, search_path: Path | None
) -> nn.Module:
    if model_format == "torchscript":
        return _load_torchscript(path)
    content = torch_load(path, spec.allow_pickle)
    from torch import nn

    if isinstance(content, nn.Module):
        return content
    state_dict = find_state_dict(content, path)
    return _module_from_state_dict(state_dict, spec, search_path)


def _load_torchscript(path: Path) -> nn.Module:
    import torch

    try:
        with warnings.catch_warnings():
            # torch >= 2.9 warns on every torch.jit.load that TorchScript is deprecated: noise
            # on stderr for the user, who chose the format, not a problem with their model.
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
            module: nn.Module = torch.jit.load(  # type: ignore[no-untyped-call]
                str(path), map_location="cpu"
            )
    except (RuntimeError, ValueError, OSError) as error:
        raise InputError(
            f"{FIELD}: {path}: not a loadable TorchScript file ({_line(error)}); "
            "re-export it with torch.jit.save, or save a state dict"
        ) from None
    return module


def torch_load(path: Path, allow_pickle: bool) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not allow_pickle:
            raise InputError(
                f"{FIELD}: {path}: holds a pickled Python object (e.g. a whole nn.Module), "
                "which runs code when loaded; save a state dict or TorchScript instead, or set "
                "model.allow_pickle: true only if you trust this file"
            ) from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        raise InputError(
            f"{FIELD}: {path}: not a readable model file ({_line(error)}); the file may be "
            "truncated or corrupt: save it again with torch.save"
        ) from None
    return _torch_load_pickled(path)


def _torch_load_pickled(path: Path) -> Any:
    import torch
    from torch import nn

    try:
        content = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # unpickling runs arbitrary code: any exception is possible
        raise InputError(f"{FIELD}: {path}: cannot unpickle ({_line(error)})") from None
    if not isinstance(content, nn.Module | Mapping):
        raise InputError(f"{FIELD}: {path}: holds a {type(content).__name__}, not a model")
    return content


def _line(error: BaseException) -> str:
    """The first line of a library's error, without PyTorch's request for bug reports."""
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    line = line.split("  (Could this error message be improved?")[0].strip()
    if len(line) > 160 and ". " in line[40:]:  # keep the first sentence of a long explanation
        line = line[: line.index(". ", 40) + 1]
    return line


def find_state_dict(content: Any, path: Path) -> Mapping[str, Any]:
    """A state dict, or a training checkpoint holding one under a usual key."""
    import torch

    if isinstance(content, Mapping):
        for key in _CHECKPOINT_KEYS:
            if isinstance(content.get(key), Mapping):
                content = content[key]
                break
        if content and all(isinstance(v, torch.Tensor) for v in content.values()):
            return {_strip_prefix(k): v for k, v in content.items()}
    raise InputError(
        f"{FIELD}: {path}: holds neither a state dict (name -> tensor) nor a TorchScript model"
    )


def _strip_prefix(key: str) -> str:
    """Checkpoints saved from DataParallel or torch.compile prefix every key."""
    for prefix in ("module.", "_orig_mod."):
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def infer_num_classes(state_dict: Mapping[str, Any]) -> int | None:
    """Rows of the last 2-D weight: the classifier head of torchvision models."""
    matrices = [v for k, v in state_dict.items() if k.endswith("weight") and v.dim() == 2]
    return int(matrices[-1].shape[0]) if matrices else None


def _module_from_state_dict(
    state_dict: Mapping[str, Any], spec: ModelSpec, search_path: Path | None
) -> nn.Module:
    if spec.architecture is None:
        raise InputError(
            f"model.architecture: {spec.path.name} is a state dict; name its architecture "
            "(e.g. resnet18, or a 'module:function' factory)"
        )
    num_classes = spec.num_classes or infer_num_classes(state_dict)
    if num_classes is None:
        raise InputError("model.num_classes: cannot infer it from the state dict; set it")
    module = build_architecture(
        spec.architecture, num_classes, cifar_stem=spec.cifar_stem, search_path=search_path
    )
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        held = infer_num_classes(state_dict)
        if spec.num_classes is not None and held is not None and held != spec.num_classes:
            raise InputError(
                f"model.num_classes: is {spec.num_classes} but {spec.path.name} holds a "
                f"classifier head with {held} outputs; set model.num_classes: {held}, or use "
                "the right model file"
            ) from None
        raise InputError(_mismatch_message(error, spec, num_classes)) from None
    return module


def _mismatch_message(error: RuntimeError, spec: ModelSpec, num_classes: int) -> str:
    details = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
    first = details[0] if details else _line(error)
    if len(first) > 240:
        first = first[:237] + "..."
    return (
        f"model.path: {spec.path.name} does not fit architecture {spec.architecture!r} with "
        f"num_classes={num_classes}, cifar_stem={str(spec.cifar_stem).lower()}: {first}; "
        "check model.architecture, model.num_classes and model.cifar_stem"
    )
