"""Which device runs the models: the CUDA GPU when one is really there, else the CPU."""

from __future__ import annotations

from mia_audit.errors import InputError


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(requested: str) -> str:
    """`auto` -> cuda if a GPU is present, else cpu; `cuda` without a GPU is an input error."""
    if requested == "cpu":
        return "cpu"
    available = cuda_available()
    if requested == "cuda" and not available:
        raise InputError(
            "runtime.device: cuda was requested but no CUDA GPU is available; "
            "use device: auto or cpu"
        )
    return "cuda" if available else "cpu"
