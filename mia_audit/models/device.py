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


def release_cuda_memory() -> None:
    """Free what the failed attempt held and hand cached CUDA blocks back, after an
    out-of-memory error and before a smaller retry. The collection matters: the error's
    traceback and the frames it names form a cycle that keeps that attempt's tensors alive."""
    import gc

    import torch

    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()
