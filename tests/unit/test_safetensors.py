"""safetensors state dicts as model.path: by extension, by content, and their bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from mia_audit.errors import InputError
from mia_audit.models.architectures import build_architecture
from mia_audit.models.loading import detect_format, is_safetensors, load_target
from mia_audit.models.settings import ModelSpec

BATCH = np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32)


@pytest.fixture(scope="module")
def resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_architecture("resnet18", 10).eval()


def spec(path: Path, **fields: object) -> ModelSpec:
    return ModelSpec.model_validate({"path": path, "architecture": "resnet18", **fields})


def eager(module: torch.nn.Module) -> np.ndarray:
    with torch.inference_mode():
        logits: torch.Tensor = module(torch.from_numpy(BATCH))
        return logits.numpy()


@pytest.mark.parametrize("name", ["model.safetensors", "weights.bin", "model.pt"])
def test_safetensors_by_extension_and_by_content(
    tmp_path: Path, resnet: torch.nn.Module, name: str
) -> None:
    path = tmp_path / name
    save_file(resnet.state_dict(), str(path))
    assert detect_format(path) == "safetensors"
    loaded = load_target(spec(path), "cpu")
    assert loaded.format == "safetensors"
    np.testing.assert_allclose(loaded.classifier(BATCH), eager(resnet), atol=1e-5)


def test_prefixed_keys_and_explicit_format(tmp_path: Path, resnet: torch.nn.Module) -> None:
    path = tmp_path / "compiled.st"
    save_file({f"_orig_mod.{k}": v for k, v in resnet.state_dict().items()}, str(path))
    loaded = load_target(spec(path, format="safetensors"), "cpu")
    np.testing.assert_allclose(loaded.classifier(BATCH), eager(resnet), atol=1e-5)


def test_torch_and_onnx_files_are_not_taken_for_safetensors(
    tmp_path: Path, resnet: torch.nn.Module
) -> None:
    torch.save(resnet.state_dict(), tmp_path / "m.pt")
    assert not is_safetensors(tmp_path / "m.pt")
    assert detect_format(tmp_path / "m.pt") == "state_dict"
    (tmp_path / "short").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    assert is_safetensors(tmp_path / "short")  # the smallest valid header
    (tmp_path / "json-list").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00[]")
    assert not is_safetensors(tmp_path / "json-list")
    (tmp_path / "huge-length").write_bytes(b"\xff" * 8 + b"{}")
    assert not is_safetensors(tmp_path / "huge-length")


def test_truncated_file_is_one_clear_error(tmp_path: Path, resnet: torch.nn.Module) -> None:
    path = tmp_path / "model.safetensors"
    save_file(resnet.state_dict(), str(path))
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(InputError, match=r"model\.path: .*model\.safetensors: not a readable "
                       r"safetensors file .*save it again with safetensors\.torch\.save_file"):
        load_target(spec(path), "cpu")


def test_an_architecture_is_required_and_must_fit(
    tmp_path: Path, resnet: torch.nn.Module
) -> None:
    path = tmp_path / "model.safetensors"
    save_file(resnet.state_dict(), str(path))
    with pytest.raises(InputError, match=r"model\.architecture: model\.safetensors is a state"):
        load_target(ModelSpec.model_validate({"path": path}), "cpu")
    with pytest.raises(InputError, match="does not fit architecture 'resnet34'"):
        load_target(spec(path, architecture="resnet34"), "cpu")


def test_an_empty_safetensors_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.safetensors"
    save_file({}, str(path))
    with pytest.raises(InputError, match="holds no tensors"):
        load_target(spec(path), "cpu")
