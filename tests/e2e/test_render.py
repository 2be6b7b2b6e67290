"""`mia-audit render`: reports re-rendered from a result.json match what `run` wrote."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from mia_audit.reports.folder import MANIFEST
from tests.conftest import DigitsTarget, RunCli

FORMATS = ["json", "html", "markdown", "junit"]


@pytest.fixture(scope="module")
def run_dir(
    digits_target: DigitsTarget, run_cli: RunCli, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """One real audit writing every format; its output folder."""
    folder = digits_target.copy_to(tmp_path_factory.mktemp("render") / "target")
    policy = {
        "version": 1,
        "name": "digits-render",
        "model": {"path": "target.onnx", "architecture": "resnet18", "num_classes": 10},
        "data": {"members": "members.npz", "non_members": "non_members.npz"},
        "preprocessing": {"mean": [0.2, 0.2, 0.2], "std": [0.3, 0.3, 0.3]},
        "attacks": ["loss", "entropy", "class_threshold"],
        "gate": {"max_auc": 0.99},
        "outputs": {"dir": "out", "formats": FORMATS},
        "runtime": {"device": "cpu", "seed": 0, "cache_dir": ".mia-cache"},
    }
    path = folder / "render-policy.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    completed = run_cli("run", path, "-q")
    assert completed.returncode == 0, completed.stderr
    return folder / "out"


def test_rerendered_reports_match_the_run(run_dir: Path, run_cli: RunCli, tmp_path: Path) -> None:
    completed = run_cli("render", run_dir / "result.json", "--output-dir", tmp_path / "again")
    assert completed.returncode == 0, completed.stderr
    written = sorted(p.name for p in (tmp_path / "again").iterdir() if p.name != MANIFEST)
    assert written == ["junit.xml", "report.html", "summary.md"]  # the default formats
    for name in written:
        assert (tmp_path / "again" / name).read_bytes() == (run_dir / name).read_bytes(), name
    assert "report.html" in completed.stdout


def test_chosen_formats_only(run_dir: Path, run_cli: RunCli, tmp_path: Path) -> None:
    result_json = run_dir / "result.json"
    completed = run_cli("render", result_json, "-f", "json", "-f", "markdown", "-o", tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST, "result.json", "summary.md"]
    assert (tmp_path / "result.json").read_bytes() == (run_dir / "result.json").read_bytes()


def test_default_output_dir_is_next_to_the_result(
    run_dir: Path, run_cli: RunCli, tmp_path: Path
) -> None:
    copy = tmp_path / "result.json"
    copy.write_bytes((run_dir / "result.json").read_bytes())
    assert run_cli("render", copy, "-f", "html").returncode == 0
    assert (tmp_path / "report.html").read_bytes() == (run_dir / "report.html").read_bytes()


def _old_schema(text: str) -> str:
    document = json.loads(text)
    document["schema_version"] = 0
    return json.dumps(document)


def _missing_field(text: str) -> str:
    document = json.loads(text)
    del document["gate"]
    return json.dumps(document)


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (lambda text: text[: len(text) // 2], "not valid JSON"),
        (lambda text: "", "not valid JSON"),
        (lambda text: "[1, 2]", "not a mia-audit result.json"),
        (_missing_field, "not a mia-audit result.json (gate: Field required)"),
        (_old_schema, "result schema version 0, but this mia-audit reads version 1"),
    ],
    ids=["truncated", "empty", "not-an-object", "missing-field", "old-schema"],
)
def test_bad_result_json_exits_2_with_one_line(
    run_dir: Path, run_cli: RunCli, tmp_path: Path, corrupt: Callable[[str], str], expected: str
) -> None:
    bad = tmp_path / "result.json"
    bad.write_text(corrupt((run_dir / "result.json").read_text()))
    (tmp_path / "report.html").write_text("previous report")
    completed = run_cli("render", bad)
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: "), completed.stderr
    assert expected in lines[0]
    assert (tmp_path / "report.html").read_text() == "previous report"


def test_missing_file_and_unknown_format_exit_2(run_cli: RunCli, tmp_path: Path) -> None:
    missing = run_cli("render", tmp_path / "nope.json")
    assert missing.returncode == 2
    assert missing.stderr.strip().startswith(f"error: {tmp_path / 'nope.json'}: no such file")
    unknown = run_cli("render", tmp_path / "nope.json", "-f", "pdf")
    assert unknown.returncode == 2
    assert "unknown format 'pdf'; available: html, json, junit, markdown" in unknown.stderr
