"""The pure parts of MLflow targets: URI shapes, which file of a download is the model, the
tracking URI without credentials, and the fast-fail request settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from mia_audit.errors import InputError
from mia_audit.models.mlflow_source import (
    FAST_FAIL,
    fast_failing_requests,
    model_file_in,
    redacted,
)
from mia_audit.models.settings import ModelSpec


@pytest.mark.parametrize(
    "uri", ["models:/digits/3", "models:/digits@candidate", "runs:/0a1b2c3d/model/model.onnx"]
)
def test_registry_uris_stay_uris(uri: str) -> None:
    spec = ModelSpec.model_validate({"path": uri}, context={"base_dir": "/policies"})
    assert spec.path == uri and spec.is_registry and spec.display_name == uri


def test_files_still_resolve_against_the_policy_folder() -> None:
    spec = ModelSpec.model_validate({"path": "m.onnx"}, context={"base_dir": "/policies"})
    assert spec.path == Path("/policies/m.onnx") and not spec.is_registry


@pytest.mark.parametrize("uri", ["models:/digits", "models:/a/b", "runs:/id", "models:/x@"])
def test_malformed_uris_are_refused_not_read_as_files(uri: str) -> None:
    with pytest.raises(ValidationError, match="is not an MLflow model URI"):
        ModelSpec.model_validate({"path": uri})


def write_mlmodel(folder: Path, flavors: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MLmodel").write_text(f"artifact_path: m\nflavors:\n{flavors}")


def test_onnx_flavor_names_its_file(tmp_path: Path) -> None:
    write_mlmodel(tmp_path / "m", "  onnx:\n    data: model.onnx\n  python_function: {}\n")
    (tmp_path / "m" / "model.onnx").write_bytes(b"onnx")
    assert model_file_in(tmp_path, "models:/x/1", False) == tmp_path / "m" / "model.onnx"
    (tmp_path / "m" / "model.onnx").unlink()
    with pytest.raises(InputError, match=r"its onnx flavor names model\.onnx, which is missing"):
        model_file_in(tmp_path, "models:/x/1", False)


def test_pickled_pytorch_flavor_is_handed_to_the_loader(tmp_path: Path) -> None:
    write_mlmodel(tmp_path, "  pytorch:\n    model_data: data\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "model.pth").write_bytes(b"pickle")
    assert model_file_in(tmp_path, "models:/x/1", False) == tmp_path / "data" / "model.pth"


def test_other_flavors_are_refused_with_the_list(tmp_path: Path) -> None:
    write_mlmodel(tmp_path, "  sklearn: {}\n  python_function: {}\n")
    with pytest.raises(InputError, match=r"cannot read its MLflow flavors \(python_function, "
                       r"sklearn\); log the model with mlflow\.onnx\.log_model"):
        model_file_in(tmp_path, "models:/x/1", False)


def test_a_folder_without_mlmodel_needs_exactly_one_model_file(tmp_path: Path) -> None:
    (tmp_path / "state_dict.pth").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not a model")
    assert model_file_in(tmp_path, "runs:/a/b", False) == tmp_path / "state_dict.pth"
    (tmp_path / "weights.safetensors").write_bytes(b"x")
    with pytest.raises(InputError, match=r"has no MLmodel file and 2 model files \(state_dict"
                       r"\.pth, weights\.safetensors\); point runs:/RUN_ID/PATH at the one"):
        model_file_in(tmp_path, "runs:/a/b", False)


def test_a_downloaded_file_is_the_model(tmp_path: Path) -> None:
    (tmp_path / "x.onnx").write_bytes(b"x")
    assert model_file_in(tmp_path / "x.onnx", "runs:/a/x.onnx", False) == tmp_path / "x.onnx"


def test_credentials_never_reach_the_result() -> None:
    assert redacted("https://user:secret@mlflow.example.com/") == "https://mlflow.example.com/"
    assert redacted("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert redacted("databricks") == "databricks"


def test_fast_fail_settings_apply_only_where_the_user_set_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in FAST_FAIL:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    with fast_failing_requests():
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == FAST_FAIL["MLFLOW_HTTP_REQUEST_TIMEOUT"]
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"
