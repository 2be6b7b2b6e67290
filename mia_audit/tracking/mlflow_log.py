"""`outputs.mlflow`: the verdict as an MLflow run, and as tags on the audited model version.

Runs after the reports are written, so a tracking server that fails cannot cost the local
reports. What a lost log means for the exit code is decided by the caller (docs/mlflow.md,
"When the tracking server fails"): a PASS that could not be recorded exits 3, a FAIL stays 1.

Tag order closes the one way a lost write could promote a leaking version: a failed verdict
writes `mia_audit.passed=false` first (over any earlier `true`), a passed one writes it last,
after every figure it vouches for. A version is tagged by the number the audit resolved, never
by alias: the alias may have moved to another version meanwhile.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mia_audit._version import __version__
from mia_audit.errors import InputError
from mia_audit.models.mlflow_source import fast_failing_requests, import_mlflow, redacted
from mia_audit.models.settings import ModelSpec
from mia_audit.reports.settings import MlflowOutput
from mia_audit.result import Result, worst_attack

FIELD = "outputs.mlflow"
TAG_PREFIX = "mia_audit."
#: Files of the report folder logged as the run's artifacts (those the formats wrote).
ARTIFACTS = ("result.json", "report.html", "summary.md", "junit.xml", "results.sarif")


@dataclass(frozen=True)
class MlflowLog:
    """What was recorded: the run, and the version tagged (None when none was asked)."""

    run_id: str
    experiment_id: str
    tagged_version: str | None


class TrackingFailure(Exception):
    """The tracking server failed while the result was being logged."""


def server_for(output: MlflowOutput, model: ModelSpec) -> str:
    import os

    uri = (
        output.tracking_uri
        or (model.mlflow.tracking_uri if model.mlflow else None)
        or os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    )
    if not uri:
        raise InputError(
            f"{FIELD}: no MLflow tracking server is named; set outputs.mlflow.tracking_uri or "
            "the MLFLOW_TRACKING_URI environment variable"
        )
    return uri


def check_mlflow_output(output: MlflowOutput, model: ModelSpec) -> str:
    """Before the audit: MLflow is installed, a server is named, and a version can be tagged.
    Returns the tracking URI."""
    import_mlflow(FIELD)
    server = server_for(output, model)
    if output.tag_model_version and not str(model.path).startswith("models:/"):
        raise InputError(
            f"{FIELD}.tag_model_version: model.path {model.path} is not a registered model "
            "version (models:/NAME/VERSION or models:/NAME@ALIAS); set it to false or audit "
            "a registry version"
        )
    return server


def log_result(
    result: Result, files: Sequence[Path], output: MlflowOutput, model: ModelSpec
) -> MlflowLog:
    """Log the run and tag the version; raise TrackingFailure naming what was lost."""
    server = server_for(output, model)
    import_mlflow(FIELD)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=server, registry_uri=server)
    run_id: str | None = None
    with fast_failing_requests():
        try:
            experiment_id = _experiment(client, output.experiment)
            run_id = _start_run(client, experiment_id, result, output)
            _log_figures(client, run_id, result)
            for path in files:
                if path.name in ARTIFACTS and path.is_file():
                    client.log_artifact(run_id, str(path))
            version = _tag_version(client, result, run_id) if output.tag_model_version else None
            client.set_terminated(run_id, "FINISHED")
        except (MlflowException, OSError) as error:
            _mark_failed(client, run_id)
            raise TrackingFailure(_failure_text(server, run_id, error)) from None
    return MlflowLog(run_id=run_id, experiment_id=experiment_id, tagged_version=version)


def _failure_text(server: str, run_id: str | None, error: Exception) -> str:
    from mia_audit.models.mlflow_source import first_line

    where = f"run {run_id}" if run_id else "no run was created"
    return f"the MLflow server {redacted(server)} failed ({first_line(error)}; {where})"


def _mark_failed(client: Any, run_id: str | None) -> None:
    if run_id is None:
        return
    try:
        client.set_terminated(run_id, "FAILED")
    except Exception:  # the server is already failing; the error raised next says so
        return


def _experiment(client: Any, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return str(found.experiment_id) if found is not None else str(client.create_experiment(name))


def _start_run(client: Any, experiment_id: str, result: Result, output: MlflowOutput) -> str:
    target = result.target.mlflow
    tags = {
        f"{TAG_PREFIX}passed": str(result.passed).lower(),
        f"{TAG_PREFIX}exit_code": str(result.exit_code),
        f"{TAG_PREFIX}version": __version__,
        f"{TAG_PREFIX}model": target.resolved_uri if target else result.target.path,
    }
    name = output.run_name or result.policy.name
    run = client.create_run(experiment_id, run_name=name, tags=tags)
    return str(run.info.run_id)


def result_sha256(result: Result) -> str:
    """sha256 of result.json as the json format writes it."""
    return hashlib.sha256(result.to_json().encode("utf-8")).hexdigest()


def run_params(result: Result) -> dict[str, str]:
    target = result.target
    params = {
        "seed": str(result.seed),
        "policy_name": result.policy.name,
        "policy_sha256": result.policy.sha256,
        "target_path": target.path,
        "target_sha256": target.sha256,
        "tool_version": result.tool.version,
        "result_sha256": result_sha256(result),
    }
    if target.mlflow is not None:
        params.update(
            model_uri=target.mlflow.resolved_uri,
            model_version=target.mlflow.version or "",
            model_run_id=target.mlflow.run_id or "",
        )
    return params


def run_metrics(result: Result) -> dict[str, float]:
    """Every attack's figures with their CIs, and the verdict."""
    metrics: dict[str, float] = {"passed": float(result.passed)}
    worst = worst_attack(result, "auc")
    if worst is not None:
        metrics["max_auc"] = worst.auc
    for attack in result.attacks:
        prefix = _key(attack.id)
        figures: dict[str, float | None] = {
            "auc": attack.auc,
            "advantage": attack.advantage,
            "balanced_accuracy": attack.balanced_accuracy,
        }
        _with_ci(figures, "auc", attack.auc_ci)
        _with_ci(figures, "advantage", attack.advantage_ci)
        for fpr, tpr in attack.tpr_at_fpr.items():
            figures[f"tpr_at_fpr_{fpr}"] = tpr
            _with_ci(figures, f"tpr_at_fpr_{fpr}", attack.tpr_at_fpr_ci.get(fpr))
        if attack.epsilon_lower_bound is not None:
            figures["epsilon_lower_bound"] = attack.epsilon_lower_bound.value
        metrics.update({f"{prefix}.{k}": v for k, v in figures.items() if v is not None})
    return metrics


def _with_ci(figures: dict[str, float | None], name: str, ci: tuple[float, float] | None) -> None:
    if ci is not None:
        figures[f"{name}_ci_low"], figures[f"{name}_ci_high"] = ci


def _key(text: str) -> str:
    """An MLflow key: letters, digits, _ - . / and spaces only."""
    return re.sub(r"[^\w\-./ ]", "_", text)


def _log_figures(client: Any, run_id: str, result: Result) -> None:
    from mlflow.entities import Metric, Param

    metrics = [Metric(k, v, 0, 0) for k, v in run_metrics(result).items()]
    params = [Param(k, v) for k, v in run_params(result).items()]
    client.log_batch(run_id, metrics=metrics, params=params)


def version_tags(result: Result, run_id: str) -> dict[str, str]:
    """The model-version tags, `mia_audit.passed` last (see the module's docstring)."""
    worst = worst_attack(result, "auc")
    return {
        f"{TAG_PREFIX}max_auc": f"{worst.auc:.6f}" if worst else "",
        f"{TAG_PREFIX}result_sha256": result_sha256(result),
        f"{TAG_PREFIX}version": __version__,
        f"{TAG_PREFIX}policy_sha256": result.policy.sha256,
        f"{TAG_PREFIX}run_id": run_id,
        f"{TAG_PREFIX}passed": str(result.passed).lower(),
    }


def _tag_version(client: Any, result: Result, run_id: str) -> str | None:
    target = result.target.mlflow
    if target is None or target.name is None or target.version is None:
        return None
    tags = list(version_tags(result, run_id).items())
    if not result.passed:  # false first, over any earlier `true`
        tags = [tags[-1], *tags[:-1]]
    for key, value in tags:
        client.set_model_version_tag(target.name, target.version, key, value)
    return target.version


@dataclass(frozen=True)
class LogReport:
    """The exit code after logging, and the line that says what was (not) recorded."""

    exit_code: int
    line: str
    failed: bool


def record(
    result: Result, files: Sequence[Path], output: MlflowOutput, model: ModelSpec
) -> LogReport:
    """Log, and decide the exit code: a PASS that could not be recorded is exit 3 (the
    promotion step must not act on a verdict its registry does not hold); a FAIL stays 1."""
    from mia_audit.errors import EXIT_INCOMPLETE, EXIT_PASS

    try:
        logged = log_result(result, files, output, model)
    except TrackingFailure as failure:
        code = EXIT_INCOMPLETE if result.exit_code == EXIT_PASS else result.exit_code
        verdict = "PASS" if result.passed else "FAIL"
        return LogReport(
            code,
            f"{FIELD}: the {verdict} was not recorded: {failure}; the reports are written "
            f"locally; rerun once the server is back (exit {code})",
            failed=True,
        )
    tagged = f"; tagged {model_version(result)}" if logged.tagged_version else ""
    return LogReport(
        result.exit_code,
        f"mlflow: logged run {logged.run_id} (experiment {output.experiment}){tagged}",
        failed=False,
    )


def model_version(result: Result) -> str:
    target = result.target.mlflow
    return target.resolved_uri if target else result.target.path
