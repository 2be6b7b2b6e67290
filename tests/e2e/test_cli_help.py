"""`mia-audit --help` stays fast: it does not import torch (a fresh interpreter shows it)."""

from __future__ import annotations

import subprocess
import sys


def test_help_does_not_import_torch_or_mlflow() -> None:
    code = (
        "import sys\n"
        "from mia_audit.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'sklearn', 'mlflow', 'safetensors')\n"
        "         if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "Usage" in completed.stdout
    assert completed.stdout.strip().splitlines()[-1] == "HEAVY="


