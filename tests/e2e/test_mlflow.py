"""Targets from a real MLflow tracking server, and the verdict back onto the model version.

A `mlflow server` (SQLite backend, artifacts served from a local folder) runs on 127.0.0.1 for
this module. The digits target is registered as the ONNX flavor and as a logged state dict, an
honest model (trained on digits disjoint from both members and non-members) as ONNX; the console
script audits them by registry URI, and the tags are read back with the MLflow client.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.conftest import (
    CONSOLE_SCRIPT,
    DigitsTarget,
    RunCli,
    environment_with_path,
    without_progress,
)

mlflow = pytest.importorskip("mlflow")  # the `mlflow` extra; CI installs it (Makefile)

MLFLOW_CLI = Path(sys.executable).with_name("mlflow")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Server:
    uri: str
    folder: Path

    def client(self) -> Any:
        return mlflow.MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)


def _wait_until_up(process: subprocess.Popen[bytes], uri: str, log: Path) -> None:
    """Poll /health until the server answers (it may take a minute on a loaded machine)."""
    while process.poll() is None:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    pytest.fail(f"mlflow server exited ({process.returncode}): {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = folder / "server.log"
    command = [
        str(MLFLOW_CLI), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination", str(folder / "artifacts"),
    ]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True
        )
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(process, uri, log)
        yield Server(uri, folder)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def train_honest_target(directory: Path) -> Path:
    """A small CNN trained on the population digits only: members and non-members are equally
    unseen by it, so no attack can tell them apart, yet it classifies them well."""
    import torch
    from torch import nn

    from mia_audit.demo import export_onnx

    data = np.load(directory / "population.npz")
    images = torch.from_numpy(data["x"]).permute(0, 3, 1, 2).float() / 255.0
    images = (images - 0.2) / 0.3
    labels = torch.from_numpy(data["y"])
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, 10),
    )  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(4):
        for batch in torch.split(torch.randperm(len(labels)), 64):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
    path = directory / "honest.onnx"
    export_onnx(model.eval(), path, 32)
    return path


@dataclass(frozen=True)
class Registry:
    """The digits versions: 1 leaking ONNX (alias candidate), 2 leaking state dict, 3 honest
    ONNX (alias honest), 4 pickled PyTorch flavor, 5 scikit-learn flavor."""

    server: Server
    files: Path
    run_id: str


def _register(client: Any, run_id: str, artifact: str) -> str:
    version = client.create_model_version("digits", f"runs:/{run_id}/{artifact}", run_id=run_id)
    return str(version.version)


@pytest.fixture(scope="module")
def registry(
    server: Server, digits_target: DigitsTarget, tmp_path_factory: pytest.TempPathFactory
) -> Registry:
    import onnx
    import torch
    from sklearn.linear_model import LogisticRegression

    from mia_audit.models.architectures import build_architecture

    files = digits_target.copy_to(tmp_path_factory.mktemp("registry") / "digits")
    honest = train_honest_target(files)
    state_dict = torch.load(files / "target.pt", weights_only=True)
    module = build_architecture("resnet18", 10)
    module.load_state_dict(state_dict)
    mlflow.set_tracking_uri(server.uri)
    with mlflow.start_run() as run:
        mlflow.onnx.log_model(onnx.load(str(files / "target.onnx")), name="leaking_onnx")
        mlflow.pytorch.log_state_dict(state_dict, "leaking_state_dict")
        mlflow.onnx.log_model(onnx.load(str(honest)), name="honest_onnx")
        mlflow.pytorch.log_model(
            module, name="pickled", serialization_format="pickle", pip_requirements=[]
        )
        sklearn_model = LogisticRegression().fit(np.eye(2), [0, 1])
        mlflow.sklearn.log_model(sklearn_model, name="sklearn", pip_requirements=[])
    client = server.client()
    client.create_registered_model("digits")
    run_id = run.info.run_id
    artifacts = ["leaking_onnx", "leaking_state_dict", "honest_onnx", "pickled", "sklearn"]
    versions = [_register(client, run_id, name) for name in artifacts]
    assert versions == ["1", "2", "3", "4", "5"]
    client.set_registered_model_alias("digits", "candidate", "1")
    client.set_registered_model_alias("digits", "honest", "3")
    return Registry(server, files, run_id)


GATE = {"max_auc": 0.6, "max_tpr_at_fpr": [{"fpr": 0.05, "max": 0.1}]}


def write_policy(folder: Path, model: dict[str, Any], **sections: Any) -> Path:
    """A policy beside the digits data: two fast attacks, a gate the leaking target fails."""
    folder.mkdir(parents=True, exist_ok=True)
    policy = {
        "version": 1,
        "name": "digits-gate",
        "model": {"num_classes": 10, **model},
        "data": {"members": "members.npz", "non_members": "non_members.npz"},
        "preprocessing": {"mean": [0.2] * 3, "std": [0.3] * 3},
        "attacks": ["loss", "confidence"],
        "gate": GATE,
        "outputs": {"dir": "report", "formats": ["json", "html", "markdown"]},
        "runtime": {"device": "cpu", "cache_dir": ".mia-cache"},
        **sections,
    }
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def data_folder(registry: Registry, tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for data in ("members.npz", "non_members.npz"):
        (folder / data).symlink_to(registry.files / data)
    return folder


def result_of(policy: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((policy.parent / "report" / "result.json").read_text())
    return result


def aucs(result: dict[str, Any]) -> dict[str, float]:
    return {attack["id"]: attack["auc"] for attack in result["attacks"]}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _audit_by_uri(
    registry: Registry, run_cli: RunCli, tmp_path: Path, name: str, uri: str, **model: Any
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    policy = write_policy(
        data_folder(registry, tmp_path, name),
        {"path": uri, "mlflow": {"tracking_uri": registry.server.uri}, **model},
        outputs={
            "dir": "report",
            "formats": ["json", "html", "markdown"],
            "mlflow": {"experiment": "privacy-gate", "tag_model_version": True},
        },
    )
    completed = run_cli("run", policy)
    return completed, result_of(policy) if completed.returncode in (0, 1) else {}


def _audit_file(
    registry: Registry, run_cli: RunCli, tmp_path: Path, name: str, file: str, **model: Any
) -> dict[str, Any]:
    folder = data_folder(registry, tmp_path, name)
    (folder / file).symlink_to(registry.files / file)
    policy = write_policy(folder, {"path": file, **model})
    completed = run_cli("run", policy)
    assert completed.returncode in (0, 1), completed.stderr
    return result_of(policy)


def test_leaking_and_honest_versions_get_their_verdict_as_tags(
    registry: Registry, run_cli: RunCli, tmp_path: Path
) -> None:
    client = registry.server.client()
    leaking, leaking_result = _audit_by_uri(
        registry, run_cli, tmp_path, "leaking", "models:/digits@candidate"
    )
    assert leaking.returncode == 1, leaking.stderr
    assert "tagged models:/digits/1" in leaking.stdout
    honest, honest_result = _audit_by_uri(
        registry, run_cli, tmp_path, "honest", "models:/digits@honest"
    )
    assert honest.returncode == 0, honest.stdout + honest.stderr
    tags = {v: client.get_model_version("digits", v).tags for v in ("1", "3")}
    assert tags["1"]["mia_audit.passed"] == "false"
    assert tags["3"]["mia_audit.passed"] == "true"
    cases = (("1", leaking_result, "leaking"), ("3", honest_result, "honest"))
    for version, result, report in cases:
        assert tags[version]["mia_audit.result_sha256"] == sha256(
            tmp_path / report / "report" / "result.json"
        )
        assert float(tags[version]["mia_audit.max_auc"]) == pytest.approx(
            max(aucs(result).values()), abs=1e-6
        )
        assert tags[version]["mia_audit.version"] == result["tool"]["version"]
    # The same figures as auditing the files themselves.
    leaking_file = _audit_file(registry, run_cli, tmp_path, "f1", "target.onnx")
    assert aucs(leaking_result) == aucs(leaking_file)
    honest_file = _audit_file(registry, run_cli, tmp_path, "f3", "honest.onnx")
    assert aucs(honest_result) == aucs(honest_file)
    record = leaking_result["target"]["mlflow"]
    assert record["resolved_uri"] == "models:/digits/1" and record["alias"] == "candidate"
    assert record["run_id"] == registry.run_id and record["version"] == "1"
    assert record["artifact"] == "leaking_onnx/model.onnx"
    assert record["artifact_sha256"] == leaking_result["target"]["sha256"]
    # mlflow.onnx.log_model re-serialises the model: the hash is that of the logged file.
    logged = mlflow.artifacts.download_artifacts(
        artifact_uri=f"runs:/{registry.run_id}/leaking_onnx",
        dst_path=str(tmp_path / "download"),
        tracking_uri=registry.server.uri,
    )
    assert record["artifact_sha256"] == sha256(Path(logged) / "model.onnx")


def test_the_logged_run_holds_figures_and_reports(
    registry: Registry, run_cli: RunCli, tmp_path: Path
) -> None:
    completed, result = _audit_by_uri(registry, run_cli, tmp_path, "run", "models:/digits/1")
    assert completed.returncode == 1, completed.stderr
    client = registry.server.client()
    run_id = client.get_model_version("digits", "1").tags["mia_audit.run_id"]
    run = client.get_run(run_id)
    loss = result["attacks"][0]
    assert loss["id"] == "loss"
    assert run.data.metrics["loss.auc"] == pytest.approx(loss["auc"])
    assert run.data.metrics["loss.auc_ci_low"] == pytest.approx(loss["auc_ci"][0])
    assert run.data.metrics["loss.tpr_at_fpr_0.05_ci_high"] == pytest.approx(
        loss["tpr_at_fpr_ci"]["0.05"][1]
    )
    assert run.data.metrics["passed"] == 0.0
    assert run.data.params["seed"] == str(result["seed"])
    assert run.data.params["policy_sha256"] == result["policy"]["sha256"]
    assert run.data.tags["mia_audit.passed"] == "false"
    assert run.info.status == "FINISHED"
    names = {entry.path for entry in client.list_artifacts(run_id)}
    assert names == {"result.json", "report.html", "summary.md"}
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "privacy-gate"


def test_state_dict_version_audits_like_the_pt_file(
    registry: Registry, run_cli: RunCli, tmp_path: Path
) -> None:
    completed, result = _audit_by_uri(
        registry, run_cli, tmp_path, "sd", "models:/digits/2", architecture="resnet18"
    )
    assert completed.returncode == 1, completed.stderr
    assert result["target"]["format"] == "state_dict"
    assert result["target"]["mlflow"]["artifact"] == "leaking_state_dict/state_dict.pth"
    direct = _audit_file(registry, run_cli, tmp_path, "f2", "target.pt", architecture="resnet18")
    assert aucs(result) == pytest.approx(aucs(direct), abs=1e-6)


def _refused(completed: subprocess.CompletedProcess[str]) -> str:
    assert completed.returncode == 2, completed.stdout + completed.stderr
    errors = without_progress(completed.stderr)
    assert len(errors) == 1 and errors[0].startswith("error: "), completed.stderr
    assert "Traceback" not in completed.stderr
    return errors[0]


def _run_uri(registry: Registry, run_cli: RunCli, tmp_path: Path, uri: str, **model: Any) -> str:
    folder = data_folder(registry, tmp_path, f"case{len(list(tmp_path.iterdir()))}")
    model = {"path": uri, "mlflow": {"tracking_uri": registry.server.uri}, **model}
    policy = write_policy(folder, model)
    message = _refused(run_cli("run", policy))
    assert not (folder / "report").exists()  # a refused run leaves no report folder
    return message


def test_missing_version_alias_and_run_are_exit_2(
    registry: Registry, run_cli: RunCli, tmp_path: Path
) -> None:
    for uri in ("models:/digits/99", "models:/digits@nope", "models:/nobody/1", "runs:/0a1b2c/m"):
        message = _run_uri(registry, run_cli, tmp_path, uri)
        server = registry.server.uri
        assert f"model.path: {uri}: not found on the MLflow server {server}" in message
        assert "check the name, version, alias or run id" in message


def test_pickled_flavor_needs_allow_pickle(
    registry: Registry, run_cli: RunCli, tmp_path: Path
) -> None:
    message = _run_uri(registry, run_cli, tmp_path, "models:/digits/4")
    where = "models:/digits/4 (artifact pickled/data/model.pth)"
    assert f"model.path: {where}: holds a pickled Python object" in message
    assert "model.allow_pickle: true only if you trust this file" in message
    completed, result = _audit_by_uri(
        registry, run_cli, tmp_path, "pickled", "models:/digits/4", allow_pickle=True
    )
    assert completed.returncode == 1, completed.stderr
    assert result["target"]["format"] == "state_dict"  # a pickled module, as for a .pt file


def test_unreadable_flavor_is_exit_2(registry: Registry, run_cli: RunCli, tmp_path: Path) -> None:
    message = _run_uri(registry, run_cli, tmp_path, "models:/digits/5")
    flavors = "its MLflow flavors (python_function, sklearn)"
    assert f"models:/digits/5: mia-audit cannot read {flavors}" in message
    assert "mlflow.onnx.log_model" in message


def test_unreachable_server_fails_fast_with_exit_2(
    registry: Registry, run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    folder = data_folder(registry, tmp_path, "dead")
    message = _refused(run_cli("run", write_policy(folder, {"path": "models:/digits@candidate"})))
    assert f"model.path: models:/digits@candidate: cannot reach the MLflow server {dead}" in message
    assert "Connection refused" in message and "MLFLOW_TRACKING_URI" in message
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    message = _refused(run_cli("run", write_policy(folder, {"path": "models:/digits@candidate"})))
    assert "no MLflow tracking server is named; set the MLFLOW_TRACKING_URI" in message


def test_malformed_uri_and_untaggable_target_are_exit_2(
    registry: Registry, run_cli: RunCli, tmp_path: Path
) -> None:
    message = _run_uri(registry, run_cli, tmp_path, "models:/digits")
    assert "model.path" in message and "not an MLflow model URI" in message
    folder = data_folder(registry, tmp_path, "untaggable")
    (folder / "target.onnx").symlink_to(registry.files / "target.onnx")
    mlflow_output = {"tracking_uri": registry.server.uri, "tag_model_version": True}
    policy = write_policy(
        folder, {"path": "target.onnx"}, outputs={"dir": "report", "mlflow": mlflow_output}
    )
    for command in ("run", "validate"):  # validate refuses what run refuses
        message = _refused(run_cli(command, policy))
        assert "outputs.mlflow.tag_model_version: model.path" in message
        assert "is not a registered model version" in message


#: Makes `import mlflow` fail as it does where the extra is not installed.
HIDE_MLFLOW = '''
import sys


class _NoMlflow:
    def find_spec(self, name, path=None, target=None):
        if name == "mlflow" or name.startswith("mlflow."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None


sys.meta_path.insert(0, _NoMlflow())
'''


def test_without_the_extra_it_says_how_to_install(
    registry: Registry, tmp_path: Path
) -> None:
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(HIDE_MLFLOW)
    env = environment_with_path(hide, MLFLOW_TRACKING_URI=registry.server.uri)
    registry_target = data_folder(registry, tmp_path, "registry-target")
    file_target = data_folder(registry, tmp_path, "file-target")
    (file_target / "target.onnx").symlink_to(registry.files / "target.onnx")
    policies = [
        write_policy(registry_target, {"path": "models:/digits@candidate"}),
        write_policy(file_target, {"path": "target.onnx"}, outputs={"mlflow": {}}),
    ]
    fields = ("model.path: models:/digits@candidate", "outputs.mlflow")
    for policy, field in zip(policies, fields, strict=True):
        completed = subprocess.run(
            [str(CONSOLE_SCRIPT), "run", str(policy)],
            capture_output=True, text=True, env=env, timeout=600, check=False,
        )  # fmt: skip
        message = _refused(completed)
        assert message == (
            f"error: {field}: needs MLflow, which is not installed; pip install 'mia-audit[mlflow]'"
        )


def test_a_lost_log_keeps_the_reports_and_a_pass_becomes_exit_3(
    registry: Registry, run_cli: RunCli, tmp_path: Path
) -> None:
    """The logging server is contacted only after the reports are written, so a server that
    went down during the audit and one that is unreachable at the end are the same case."""
    dead = f"http://127.0.0.1:{free_port()}"
    for uri, verdict, code in (("models:/digits/3", "PASS", 3), ("models:/digits/1", "FAIL", 1)):
        folder = data_folder(registry, tmp_path, f"lost-{uri[-1]}")
        model = {"path": uri, "mlflow": {"tracking_uri": registry.server.uri}}
        output = {"tracking_uri": dead, "tag_model_version": True}
        policy = write_policy(folder, model, outputs={"dir": "report", "mlflow": output})
        completed = run_cli("run", policy)
        assert completed.returncode == code, completed.stderr
        assert verdict in completed.stdout  # the summary is printed as always
        errors = without_progress(completed.stderr)
        lost = [line for line in errors if line.startswith("error: outputs.mlflow")]
        assert len(lost) == 1, completed.stderr
        assert f"the {verdict} was not recorded: the MLflow server {dead} failed" in lost[0]
        assert "Connection refused" in lost[0] and f"(exit {code})" in lost[0]
        written = {p.name for p in (folder / "report").iterdir() if not p.name.startswith(".")}
        assert written == {"result.json", "report.html", "summary.md"}
        assert result_of(policy)["exit_code"] == (0 if verdict == "PASS" else 1)
