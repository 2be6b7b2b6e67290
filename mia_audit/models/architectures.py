"""Model architectures by name: torchvision classifiers, or a user `module:function` factory."""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mia_audit.errors import InputError

if TYPE_CHECKING:
    from torch import nn

    from mia_audit.result import FactoryInfo


def is_factory(name: str) -> bool:
    return ":" in name


def build_architecture(
    name: str,
    num_classes: int,
    *,
    cifar_stem: bool = False,
    search_path: Path | None = None,
    field: str = "model.architecture",
) -> nn.Module:
    """A freshly initialised model (no pretrained weights: nothing is downloaded)."""
    if is_factory(name):
        model = _from_factory(name, num_classes, search_path, field)
    else:
        model = _from_torchvision(name, num_classes, field)
    if cifar_stem:
        _use_cifar_stem(model, name, field)
    return model


def _from_torchvision(name: str, num_classes: int, field: str) -> nn.Module:
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        hint = difflib.get_close_matches(name, available, n=1)
        did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise InputError(
            f"{field}: unknown architecture {name!r}{did_you_mean}; use a torchvision "
            "classification model name or a 'module:function' factory"
        )
    extra = {"aux_logits": False, "init_weights": False} if name in _AUX_LOGIT_MODELS else {}
    model: nn.Module = torchvision.models.get_model(
        name, weights=None, num_classes=num_classes, **extra
    )
    return model


_AUX_LOGIT_MODELS = {"googlenet", "inception_v3"}


def _from_factory(spec: str, num_classes: int, search_path: Path | None, field: str) -> nn.Module:
    from torch import nn

    function = load_factory(spec, search_path, field)
    try:
        model = function(num_classes=num_classes)
    except Exception as error:  # the user's code: report it, whatever it raised
        raise InputError(f"{field}: factory {spec!r} failed: {error}") from error
    if not isinstance(model, nn.Module):
        raise InputError(
            f"{field}: factory {spec!r} returned {type(model).__name__}, not a torch nn.Module"
        )
    return model


def load_factory(spec: str, search_path: Path | None, field: str) -> Callable[..., Any]:
    """Import `module:function`; the policy's folder is searched first for the module."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise InputError(f"{field}: factory must be written 'module:function', got {spec!r}")
    added = search_path is not None and str(search_path) not in sys.path
    if added:
        sys.path.insert(0, str(search_path))
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise InputError(f"{field}: cannot import module {module_name!r} ({error})") from None
    finally:
        if added:
            sys.path.remove(str(search_path))
    function = getattr(module, function_name, None)
    if not callable(function):
        raise InputError(f"{field}: module {module_name!r} has no function {function_name!r}")
    return function  # type: ignore[no-any-return]


def describe_factories(
    named: Mapping[str, str | None], search_path: Path | None
) -> list[FactoryInfo]:
    """Every `module:function` factory among `named` (policy field -> architecture), with the
    module's file and its hash.

    A module this run imported is described by the file it was imported from; one it did not
    (e.g. model.architecture of an ONNX target without reference models) is looked up on the
    same search path without importing it, so recording it runs nothing.
    """
    from mia_audit.result import FactoryInfo
    from mia_audit.store.hashing import file_sha256

    factories = []
    for field, name in named.items():
        if name is None or not is_factory(name):
            continue
        module_name = name.partition(":")[0]
        imported = module_name in sys.modules
        source = _module_file(module_name, search_path)
        factories.append(
            FactoryInfo(
                field=field,
                name=name,
                path=None if source is None else str(source),
                sha256=None if source is None else file_sha256(source),
                imported=imported,
            )
        )
    return factories


def _module_file(module_name: str, search_path: Path | None) -> Path | None:
    """The file a module was imported from, else the one importing it would load."""
    module = sys.modules.get(module_name)
    if module is not None:
        loaded = getattr(module, "__file__", None)
        return Path(loaded) if loaded else None
    from importlib.machinery import PathFinder

    paths = [*([str(search_path)] if search_path is not None else []), *sys.path]
    parts = module_name.split(".")
    spec = None
    for depth in range(1, len(parts) + 1):
        spec = PathFinder.find_spec(".".join(parts[:depth]), paths)
        if spec is None:
            return None
        paths = list(spec.submodule_search_locations or [])
    origin = spec.origin if spec is not None else None
    return Path(origin) if origin and Path(origin).is_file() else None


def _use_cifar_stem(model: nn.Module, name: str, field: str) -> None:
    """3x3 stride-1 first convolution and no max-pool, for 32x32 inputs (ResNets only)."""
    from torch import nn

    conv1 = getattr(model, "conv1", None)
    if not isinstance(conv1, nn.Conv2d) or not hasattr(model, "maxpool"):
        raise InputError(f"{field}: cifar_stem applies to ResNet architectures, not {name!r}")
    model.conv1 = nn.Conv2d(
        conv1.in_channels, conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False
    )
    model.maxpool = nn.Identity()
