"""`mia-audit demo`: trains, audits, exits 0; a second run reuses the trained target."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import RunCli


def test_demo_trains_once_then_reuses(tmp_path: Path, run_cli: RunCli) -> None:
    folder = tmp_path / "demo"
    first = run_cli("demo", "--dir", folder)
    assert first.returncode == 0, first.stderr
    assert "would exit" in first.stdout
    assert "strongest attack:" in first.stdout and "TPR@5% FPR" in first.stdout
    for name in ("target.pt", "target.onnx", "members.npz", "non_members.npz", "policy.yaml"):
        assert (folder / name).is_file(), name
    result = json.loads((folder / "report" / "result.json").read_text())
    code = result["exit_code"]
    assert f"would exit {code}" in first.stdout
    assert result["target"]["format"] == "onnx"
    stamp = (folder / "target.pt").stat().st_mtime_ns

    second = run_cli("demo", "--dir", folder)
    assert second.returncode == 0, second.stderr
    assert "reusing the trained demo target" in second.stderr
    assert (folder / "target.pt").stat().st_mtime_ns == stamp
    again = run_cli("run", folder / "policy-state-dict.yaml", "-q")
    assert again.returncode == code
