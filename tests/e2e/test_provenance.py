"""What a run records about the code it ran and leaves outside its folders.

Factories: a policy's `module:function` is the only code it can make mia-audit run; result.json,
report.html and summary.md name each one with its file and sha256, and say whether this run
imported it (a factory named but not needed is looked up without being imported).
Home: a real run (onnxruntime, a torch-trained reference model, matplotlib for the HTML plots)
writes nothing under $HOME, and its own temporary folder is gone when it exits.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import (
    BASE_POLICY,
    CI_LIMIT_SECONDS,
    CONSOLE_SCRIPT,
    DROP,
    RunCli,
    merged_policy,
    policy_file,
)

FACTORY_MODULE = '''\
"""A user factory: the marker file proves whether this module was imported."""
from pathlib import Path

import torchvision

Path(__file__).with_name(__name__ + ".imported").write_text("imported")


def resnet18(num_classes):
    return torchvision.models.resnet18(weights=None, num_classes=num_classes)
'''


#: An ONNX target audited with the loss attack, reported in JSON, HTML and Markdown.
AUDIT = merged_policy(
    BASE_POLICY,
    model={"path": "target.onnx", "architecture": DROP},
    outputs={"formats": ["json", "html", "markdown"]},
)


@pytest.fixture(scope="module")
def folder(folder: Path) -> Path:
    for module in ("usedmodels", "unusedmodels"):
        (folder / f"{module}.py").write_text(FACTORY_MODULE)
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_factories_are_named_with_file_and_hash(folder: Path, run_cli: RunCli) -> None:
    """The state dict is built by usedmodels:resnet18 (imported); unusedmodels:resnet18 is only
    named, for reference models no attack trains, and must be recorded without running."""
    policy = policy_file(
        folder,
        "factories",
        AUDIT,
        model={"path": "target.pt", "architecture": "usedmodels:resnet18", "num_classes": 10},
        reference_training={"architecture": "unusedmodels:resnet18"},
    )

    completed = run_cli("run", policy, "-q")

    assert completed.returncode == 0, completed.stderr
    result = json.loads((folder / "out-factories" / "result.json").read_text())
    assert result["factories"] == [
        {
            "field": "model.architecture",
            "name": "usedmodels:resnet18",
            "path": str(folder / "usedmodels.py"),
            "sha256": sha256(folder / "usedmodels.py"),
            "imported": True,
        },
        {
            "field": "reference_training.architecture",
            "name": "unusedmodels:resnet18",
            "path": str(folder / "unusedmodels.py"),
            "sha256": sha256(folder / "unusedmodels.py"),
            "imported": False,
        },
    ]
    assert (folder / "usedmodels.imported").exists()
    assert not (folder / "unusedmodels.imported").exists()  # recorded, never run
    summary = (folder / "out-factories" / "summary.md").read_text()
    assert "**User code named by the policy:**" in summary
    assert f"usedmodels:resnet18 from {folder / 'usedmodels.py'}" in summary
    assert sha256(folder / "usedmodels.py") in summary
    assert "(not imported in this run)" in summary
    html = (folder / "out-factories" / "report.html").read_text()
    assert "User code (factories the policy named)" in html
    assert sha256(folder / "unusedmodels.py") in html


def test_no_factory_no_entry(folder: Path, run_cli: RunCli) -> None:
    policy = policy_file(folder, "plain", AUDIT)
    assert run_cli("run", policy, "-q").returncode == 0
    result = json.loads((folder / "out-plain" / "result.json").read_text())
    assert result["factories"] == []
    assert "User code" not in (folder / "out-plain" / "summary.md").read_text()


def test_a_run_writes_nothing_under_home(folder: Path, tmp_path: Path) -> None:
    home, scratch = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    scratch.mkdir()
    policy = policy_file(
        folder,
        "home",
        AUDIT,
        model={"path": "target.onnx", "architecture": "resnet18", "num_classes": 10},
        data={
            "members": "members.npz",
            "non_members": "non_members.npz",
            "population": "population.npz",
        },
        attacks=["loss", {"name": "lira", "reference_models": 2, "mode": "offline"}],
        reference_training={"epochs": 1, "train_size": 100},
    )
    unset = {"XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "MPLCONFIGDIR"}
    env = {key: value for key, value in os.environ.items() if key not in unset}
    env |= {"HOME": str(home), "TMPDIR": str(scratch)}

    completed = subprocess.run(
        [str(CONSOLE_SCRIPT), "run", str(policy), "-q"],
        env=env,
        capture_output=True,
        text=True,
        timeout=CI_LIMIT_SECONDS,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert (folder / "out-home" / "report.html").is_file()  # matplotlib drew its plots
    assert sorted(home.rglob("*")) == []
    assert sorted(scratch.rglob("*")) == []
