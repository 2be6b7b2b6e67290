"""Extension by one file, from another package: an attack, a report format and an executor.

A throwaway distribution `mia-audit-extras` is installed for the test session the way pip
installs one (its modules beside a `.dist-info` folder with `entry_points.txt`, on the path the
console script reads), and `mia-audit run` uses all three: the attack is scored and gated, the
format is written, the executor trains the reference models.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.conftest import CI_LIMIT_SECONDS, CONSOLE_SCRIPT, DigitsTarget, environment_with_path

ATTACK = '''
"""An attack another package ships: the largest logit, averaged over the query views."""
from typing import Literal

from mia_audit.attacks.base import Attack, AttackContext, AttackOutput
from mia_audit.attacks.config import AttackConfig
from mia_audit.attacks.registry import register


class MaxLogitConfig(AttackConfig):
    name: Literal["max_logit"]


@register
class MaxLogitAttack(Attack[MaxLogitConfig]):
    name = "max_logit"
    config_type = MaxLogitConfig
    summary = "The largest logit (a plugin's attack)."

    def score(self, context: AttackContext) -> AttackOutput:
        logits = context.target.select(self.views)
        return AttackOutput(logits.max(axis=-1).mean(axis=0), self.parameters())
'''

REPORT = '''
"""A report format another package ships: one CSV row per attack."""
from mia_audit.reports import register_format


@register_format("csv", "attacks.csv")
def render_csv(result):
    rows = ["attack,auc"] + [f"{a.id},{a.auc:.6f}" for a in result.attacks]
    return ("\\n".join(rows) + "\\n").encode()
'''

EXECUTOR = '''
"""An executor another package ships: the local one, recording what it trained."""
from pathlib import Path
from typing import ClassVar, Literal

from mia_audit.references.executors.base import ExecutorConfig
from mia_audit.references.executors.local import LocalExecutor


class RecordingConfig(ExecutorConfig):
    kind: Literal["recording"] = "recording"
    record: str


class RecordingExecutor:
    kind: ClassVar[str] = "recording"
    config_type: ClassVar[type[ExecutorConfig]] = RecordingConfig

    def __init__(self, record, device, notify):
        self.record = Path(record)
        self.local = LocalExecutor(device, notify=notify)

    @classmethod
    def create(cls, config, *, device, notify):
        return cls(config.record, device, notify)

    def train(self, tasks, data, recipe, architecture, on_trained, advance=None):
        with self.record.open("a") as record:
            record.writelines(f"{task.key}\\n" for task in tasks)
        self.local.train(tasks, data, recipe, architecture, on_trained, advance)
'''

ENTRY_POINTS = """
[mia_audit.attacks]
max_logit = mia_audit_extras.max_logit

[mia_audit.reports]
csv = mia_audit_extras.csv_report

[mia_audit.executors]
recording = mia_audit_extras.recording:RecordingExecutor
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding mia-audit-extras as pip would install it."""
    site = tmp_path_factory.mktemp("site")
    package = site / "mia_audit_extras"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in (("max_logit", ATTACK), ("csv_report", REPORT), ("recording", EXECUTOR)):
        (package / f"{name}.py").write_text(textwrap.dedent(source))
    info = site / "mia_audit_extras-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mia-audit-extras\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return site


def run_with(site: Path, *args: str | Path) -> tuple[int, str, str]:
    import subprocess

    env = environment_with_path(site, COLUMNS="200")
    completed = subprocess.run(
        [str(CONSOLE_SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=CI_LIMIT_SECONDS,
        check=False,
    )
    return completed.returncode, completed.stdout, completed.stderr


def test_a_plugin_attack_format_and_executor_run(
    site: Path, digits_target: DigitsTarget, tmp_path: Path
) -> None:
    folder = digits_target.copy_to(tmp_path / "t")
    record = folder / "trained.json"
    document = yaml.safe_load((folder / "policy.yaml").read_text())
    document |= {
        "attacks": ["loss", "max_logit", {"name": "lira", "reference_models": 2}],
        "reference_training": {"epochs": 2, "batch_size": 64, "optimizer": "adamw", "lr": 1e-3,
                               "weight_decay": 0.0, "augment": []},
        "gate": {"max_auc": 0.99},
        "outputs": {"dir": "out", "formats": ["json", "csv"]},
        "runtime": {"device": "cpu", "executor": {"kind": "recording", "record": str(record)}},
    }  # fmt: skip
    policy = folder / "plugins.yaml"
    policy.write_text(yaml.safe_dump(document, sort_keys=False))

    code, _, stderr = run_with(site, "run", policy)
    assert code == 0, stderr
    result = json.loads((folder / "out" / "result.json").read_text())
    max_logit = next(a for a in result["attacks"] if a["id"] == "max_logit")
    assert max_logit["summary"] == "The largest logit (a plugin's attack)."
    assert 0.5 < max_logit["auc"] < 1.0  # confident on members: it finds the leak
    assert "max_logit" in result["gate"]["conditions"][0]["per_attack"]
    rows = (folder / "out" / "attacks.csv").read_text().splitlines()
    assert rows[0] == "attack,auc" and any(row.startswith("max_logit,") for row in rows)
    assert len(set(record.read_text().split())) == 2  # both reference models trained there


def test_plugins_reach_the_schema_and_the_messages(site: Path, tmp_path: Path) -> None:
    code, stdout, _ = run_with(site, "schema")
    assert code == 0
    schema = json.loads(stdout)
    names = json.dumps(schema)
    assert '"max_logit"' in names and '"recording"' in names and '"local"' in names
    policy = tmp_path / "typo.yaml"
    policy.write_text(
        "version: 1\nname: t\nmodel: {path: m.onnx}\ndata: {members: a.npz, non_members: b.npz}\n"
        "preprocessing: none\nattacks: [max_logits]\ngate: {max_auc: 0.6}\n"
    )
    code, _, stderr = run_with(site, "validate", policy)
    assert code == 2 and "did you mean 'max_logit'?" in stderr
    _, _, without = run_with(Path("/nonexistent"), "validate", policy)
    assert "did you mean" not in without and ", max_logit" not in without  # only the plugin adds it


def test_a_broken_plugin_is_one_line_naming_it(tmp_path: Path) -> None:
    site = tmp_path / "site"
    info = site / "broken-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mia_audit.attacks]\nbad = no_such_module\n")
    code, _, stderr = run_with(site, "schema")
    assert code == 2
    assert stderr.startswith("error: entry point 'bad' (no_such_module) in group mia_audit")
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
