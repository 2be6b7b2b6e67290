"""What the audit ran on, for provenance (versions are read without importing packages)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

from mia_audit._version import __version__
from mia_audit.result import Environment

_PACKAGES = ("torch", "torchvision", "onnxruntime", "onnxruntime-gpu", "numpy", "scikit-learn")


def package_versions() -> dict[str, str]:
    versions = {"mia-audit": __version__}
    for package in _PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def gpu_name(device: str) -> str | None:
    if device != "cuda":
        return None
    import torch

    return str(torch.cuda.get_device_name())


def describe_environment(device: str, engine: str, precision: str) -> Environment:
    return Environment(
        device=device,
        engine=engine,
        precision=precision,
        gpu=gpu_name(device),
        python=sys.version.split()[0],
        platform=platform.platform(),
        cpu_count=os.cpu_count() or 1,
        versions=package_versions(),
    )
