"""A target from MLflow: `models:/NAME/VERSION`, `models:/NAME@ALIAS` or `runs:/RUN_ID/PATH`.

The URI is resolved once (an alias to the version it names at that moment), the version's
artifacts are downloaded into a temporary folder, and the model file in them is read by the
ordinary file loader, so an MLflow model gets exactly the checks a file gets: ONNX and state
dicts (torch.save or safetensors) load without unpickling, a pickled PyTorch flavor only with
`model.allow_pickle`. MLflow's own loaders (`mlflow.pyfunc.load_model`) are never called: they
unpickle. What was resolved goes into result.json (`target.mlflow`) and onto the version's tags
afterwards (`mia_audit.tracking.mlflow_log`), always by version number, never by alias.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mia_audit.errors import InputError
from mia_audit.result import MlflowTarget

if TYPE_CHECKING:
    from mia_audit.models.loading import LoadedModel
    from mia_audit.models.settings import ModelSpec

FIELD = "model.path"
INSTALL = "pip install 'mia-audit[mlflow]'"
#: Model files a folder of artifacts without an MLmodel file may hold.
MODEL_SUFFIXES = (".onnx", ".safetensors", ".pt", ".pth")
_MODELS = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w\-]+))$")
_RUNS = re.compile(r"^runs:/(?P<run_id>[0-9A-Za-z]+)/(?P<path>.+)$")


@dataclass(frozen=True)
class Resolved:
    """What a URI named on the server: a version (and its run) or a run's artifact."""

    resolved_uri: str
    source: str
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None


def import_mlflow(what: str) -> Any:
    """The mlflow package, or exit 2 with the install command."""
    try:
        import mlflow
    except ImportError:
        raise InputError(f"{what}: needs MLflow, which is not installed; {INSTALL}") from None
    return mlflow


#: How long one request to the tracking server may take, and how often it is retried. MLflow's
#: defaults (7 retries with backoff, 120 s timeout) keep an unreachable server waiting minutes.
#: MLflow also prints a link to every finished run on stdout, which is the tool's report.
FAST_FAIL = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


@contextmanager
def fast_failing_requests() -> Iterator[None]:
    """Fail fast on an unreachable server unless the user chose retries in the environment."""
    import os

    added = {key: value for key, value in FAST_FAIL.items() if key not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def tracking_uri(spec: ModelSpec) -> str:
    import os

    uri = (spec.mlflow.tracking_uri if spec.mlflow else None) or os.environ.get(
        "MLFLOW_TRACKING_URI", ""
    ).strip()
    if not uri:
        raise InputError(
            f"{FIELD}: {spec.path}: no MLflow tracking server is named; set the "
            "MLFLOW_TRACKING_URI environment variable or model.mlflow.tracking_uri"
        )
    return uri


def redacted(uri: str) -> str:
    """The URI without a user name and password (result.json is shared)."""
    return re.sub(r"^(\w[\w+.\-]*://)[^/@]*@", r"\1", uri)


def server_error(uri: str, server: str, error: Exception) -> InputError:
    """One line for an MLflow failure: missing version or alias, or an unreachable server."""
    code = str(getattr(error, "error_code", "") or "")
    text = first_line(error)
    if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
        return InputError(
            f"{FIELD}: {uri}: not found on the MLflow server {redacted(server)} ({text}); "
            "check the name, version, alias or run id (the MLflow UI lists them)"
        )
    if code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        return InputError(
            f"{FIELD}: {uri}: the MLflow server {redacted(server)} refused access ({text}); "
            "set MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD"
        )
    return InputError(
        f"{FIELD}: {uri}: cannot reach the MLflow server {redacted(server)} ({text}); check "
        "MLFLOW_TRACKING_URI (or model.mlflow.tracking_uri) and that the server is running"
    )


def first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else type(error).__name__
    # "API request to ... failed with exception HTTPConnectionPool(...): Max retries exceeded
    # ... (Caused by NewConnectionError(...: Failed to establish a new connection: [Errno 111]
    # Connection refused'))": the cause is the useful part.
    cause = re.search(r"\[Errno -?\d+\] ([^'\")]+)", line)
    if cause:
        return cause.group(1).strip()
    return line if len(line) <= 200 else line[:197] + "..."


def resolve(client: Any, uri: str) -> Resolved:
    """Ask the server what the URI names (an alias becomes the version it points at now)."""
    models, runs = _MODELS.match(uri), _RUNS.match(uri)
    if models:
        name, alias = models["name"], models["alias"]
        if alias:
            version = client.get_model_version_by_alias(name, alias)
        else:
            version = client.get_model_version(name, models["version"])
        return Resolved(
            resolved_uri=f"models:/{name}/{version.version}",
            source=str(version.source),
            name=name,
            version=str(version.version),
            alias=alias,
            run_id=version.run_id or None,
        )
    if runs:
        run = client.get_run(runs["run_id"])
        return Resolved(resolved_uri=uri, source=uri, run_id=run.info.run_id)
    raise InputError(  # the policy's schema refuses these first
        f"{FIELD}: {uri}: not an MLflow model URI; give models:/NAME/VERSION, "
        "models:/NAME@ALIAS or runs:/RUN_ID/PATH"
    )


def load_registry_target(
    spec: ModelSpec, device: str, search_path: Path | None = None
) -> LoadedModel:
    """Resolve and download the URI, then load its model file like any file."""
    from mia_audit.models.loading import load_file_target
    from mia_audit.store.hashing import file_sha256

    uri = str(spec.path)
    mlflow = import_mlflow(f"{FIELD}: {uri}")
    server = tracking_uri(spec)
    with tempfile.TemporaryDirectory(prefix="mia-audit-mlflow-") as folder:
        resolved, downloaded = _download(mlflow, uri, server, Path(folder))
        model_file = model_file_in(downloaded, uri, spec.allow_pickle)
        artifact = _relative(model_file, Path(folder))
        local = spec.model_copy(update={"path": model_file})
        try:
            loaded = load_file_target(local, device, search_path)
        except InputError as error:
            where = f"{uri} (artifact {artifact})"
            raise InputError(_naming_uri(str(error), model_file, where)) from None
        record = MlflowTarget(
            uri=uri,
            tracking_uri=redacted(server),
            artifact=artifact,
            artifact_sha256=file_sha256(model_file),
            **dataclasses.asdict(resolved),
        )
    return dataclasses.replace(loaded, mlflow=record)


def _naming_uri(message: str, model_file: Path, where: str) -> str:
    """The loader's message with the temporary file replaced by the URI it came from."""
    if str(model_file) in message:
        return message.replace(str(model_file), where)
    return message.replace(model_file.name, where)


def _download(mlflow: Any, uri: str, server: str, folder: Path) -> tuple[Resolved, Path]:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    with fast_failing_requests():
        try:
            resolved = resolve(MlflowClient(tracking_uri=server, registry_uri=server), uri)
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=resolved.source, dst_path=str(folder), tracking_uri=server
            )
        except MlflowException as error:
            raise server_error(uri, server, error) from None
        except OSError as error:  # requests' ConnectionError, a full disk
            raise server_error(uri, server, error) from None
    downloaded = Path(path)
    if not downloaded.exists() or (downloaded.is_dir() and not any(downloaded.iterdir())):
        raise InputError(
            f"{FIELD}: {uri}: its source {resolved.source} holds no files; register a "
            "version whose source is a logged model or a model file"
        )
    return resolved, downloaded


def model_file_in(downloaded: Path, uri: str, allow_pickle: bool) -> Path:
    """The file to load: the download itself, the file an MLmodel's flavor names, or the one
    model file in a folder of artifacts."""
    if downloaded.is_file():
        return downloaded
    candidates = [*sorted(downloaded.glob("MLmodel")), *sorted(downloaded.glob("*/MLmodel"))]
    mlmodel = candidates[0] if candidates else None
    if mlmodel is not None:
        return _flavor_file(mlmodel, uri)
    found = sorted(p for p in downloaded.rglob("*") if p.suffix.lower() in MODEL_SUFFIXES)
    if len(found) == 1:
        return found[0]
    listed = ", ".join(_relative(p, downloaded) for p in found[:5]) or "none"
    raise InputError(
        f"{FIELD}: {uri}: has no MLmodel file and {len(found)} model files ({listed}); "
        "point runs:/RUN_ID/PATH at the one model file to audit"
    )


def _flavor_file(mlmodel: Path, uri: str) -> Path:
    import yaml

    try:
        flavors = (yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}).get("flavors", {})
    except (yaml.YAMLError, OSError, UnicodeDecodeError, AttributeError) as error:
        raise InputError(f"{FIELD}: {uri}: its MLmodel file is unreadable ({error})") from None
    folder = mlmodel.parent
    if "onnx" in flavors:
        return _existing(folder / str(flavors["onnx"].get("data", "model.onnx")), uri, "onnx")
    if "pytorch" in flavors:
        data = folder / str(flavors["pytorch"].get("model_data", "data"))
        pickled = data / "model.pth"
        if pickled.is_file():
            return pickled  # the loader refuses it without model.allow_pickle
    names = ", ".join(sorted(map(str, flavors))) or "none"
    raise InputError(
        f"{FIELD}: {uri}: mia-audit cannot read its MLflow flavors ({names}); log the model "
        "with mlflow.onnx.log_model, as a state dict (mlflow.pytorch.log_state_dict) or a "
        ".safetensors artifact, or with mlflow.pytorch.log_model(serialization_format='pickle') "
        "and model.allow_pickle: true only if you trust it"
    )


def _existing(path: Path, uri: str, flavor: str) -> Path:
    if not path.is_file():
        raise InputError(f"{FIELD}: {uri}: its {flavor} flavor names {path.name}, which is missing")
    return path


def _relative(path: Path, folder: Path) -> str:
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return path.name
