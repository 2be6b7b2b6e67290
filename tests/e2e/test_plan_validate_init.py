"""`validate` means "run will not reject this", `plan` says what a run will do and how long it
takes, `init` writes a starter policy (issue 12, points 3, 5, 6 and 7), through the console
script on the real digits target."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.conftest import RunCli, demo_policy_file

ROOT = Path(__file__).resolve().parents[2]


def write_policy(folder: Path, name: str, **changes: Any) -> Path:
    """The demo's state-dict policy (target.pt, resnet18) with the loss attack, a lenient gate,
    the CPU, reports in report-<name>, and `changes` (sections replaced; runtime keys added)."""
    runtime = {"device": "cpu", **changes.get("runtime", {})}
    sections = {"attacks": ["loss"], "gate": {"max_auc": 0.99}, **changes, "runtime": runtime}
    return demo_policy_file(folder, name, **sections, outputs={"dir": f"report-{name}"})


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


# --- validate -----------------------------------------------------------------------------------


def test_validate_passes_what_run_accepts(folder: Path, run_cli: RunCli) -> None:
    completed = run_cli("validate", write_policy(folder, "good"))
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == [
        "policy ok: digits-resnet18-demo (1 attack, 1 gate condition)",
        "model: state_dict, 10 classes; data: 200 members, 200 non-members, images 3x32x32",
    ]


@pytest.mark.parametrize(
    ("name", "changes", "mentions"),
    [
        (
            "no-architecture",
            {"model": {"path": "target.pt", "num_classes": 10}},
            ("model.architecture", "target.pt is a state dict"),
        ),
        (
            "wrong-num-classes",
            {"model": {"path": "target.pt", "architecture": "resnet18", "num_classes": 7}},
            ("model.num_classes", "is 7", "10 outputs"),
        ),
        (
            "wrong-architecture",
            {"model": {"path": "target.pt", "architecture": "resnet34", "num_classes": 10}},
            ("model.path", "does not fit architecture 'resnet34'"),
        ),
        (
            "missing-baseline",
            {"gate": {"max_auc": 0.99, "max_auc_increase": 0.02}},
            ("gate.max_auc_increase", "baseline"),
        ),
        (
            "too-small-for-the-tpr",
            {"data": {"members": "members.npz", "non_members": "non_members.npz",
                      "max_per_side": 100}, "gate": {"max_tpr_at_fpr": {"fpr": 0.01, "max": 0.1}}},
            ("gate.max_tpr_at_fpr", "1000 non-members"),
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)  # fmt: skip
def test_validate_refuses_what_run_refuses(
    folder: Path, run_cli: RunCli, name: str, changes: dict[str, Any], mentions: tuple[str, ...]
) -> None:
    policy = write_policy(folder, name, **changes)
    for command in ("validate", "run"):
        completed = run_cli(command, policy)
        assert completed.returncode == 2, (command, completed.stderr)
        (line,) = error_lines(completed.stderr)
        assert all(mention in line for mention in mentions), (command, line)
    assert not (folder / f"report-{name}").exists()


def test_validate_takes_a_baseline(folder: Path, run_cli: RunCli, tmp_path: Path) -> None:
    baseline = tmp_path / "previous.json"
    baseline.write_text(json.dumps({"schema_version": 1, "attacks": []}))
    policy = write_policy(folder, "baseline", gate={"max_auc": 0.99, "max_auc_increase": 0.02})
    completed = run_cli("validate", policy, "--baseline", baseline)
    assert completed.returncode == 0, completed.stderr
    assert f"baseline {baseline}" in completed.stdout
    wrong = tmp_path / "v2.json"
    wrong.write_text(json.dumps({"schema_version": 2, "attacks": []}))
    refused = run_cli("validate", policy, "--baseline", wrong)
    assert refused.returncode == 2 and "schema_version 2 cannot be compared" in refused.stderr


def test_a_policy_with_several_mistakes_lists_each(folder: Path, run_cli: RunCli) -> None:
    policy = folder / "typos.yaml"
    policy.write_text(
        "version: 1\nname: typos\nmodel: {path: target.pt, architecture: resnet18, "
        "num_clases: 10}\ndata: {members: members.npz, non_members: non_members.npz}\n"
        "preprocessing: none\nattacks: [los, confidence]\ngate: {max_acu: 0.6}\n"
    )
    completed = run_cli("validate", policy)
    assert completed.returncode == 2
    lines = completed.stderr.splitlines()
    assert lines == error_lines(completed.stderr) and "Traceback" not in completed.stderr
    assert len(lines) == 3, lines
    assert "line 3: model.num_clases: unknown key 'num_clases' (did you mean 'num_classes'?)" \
        in lines[0]  # fmt: skip
    assert "line 6: attacks[0]: unknown attack 'los' (did you mean 'loss'?)" in lines[1]
    assert "line 7: gate.max_acu: unknown key 'max_acu' (did you mean 'max_auc'?)" in lines[2]


# --- plan and runtime.max_minutes -----------------------------------------------------------


@pytest.fixture(scope="module")
def reference_policy(folder: Path) -> Path:
    return write_policy(
        folder,
        "reference",
        data={"members": "members.npz", "non_members": "non_members.npz",
              "population": "population.npz", "max_per_side": 60},
        attacks=["loss", {"name": "lira", "reference_models": 2},
                 {"name": "rmia", "reference_models": 2}],
        reference_training={"epochs": 1, "batch_size": 32, "optimizer": "adamw", "lr": 0.001,
                            "weight_decay": 0.0, "augment": []},
    )  # fmt: skip


def plan_json(run_cli: RunCli, policy: Path) -> dict[str, Any]:
    completed = run_cli("plan", policy, "--json")
    assert completed.returncode == 0, completed.stderr
    plan: dict[str, Any] = json.loads(completed.stdout)
    return plan


def test_plan_says_what_run_will_do(reference_policy: Path, run_cli: RunCli) -> None:
    before = plan_json(run_cli, reference_policy)
    references = before["reference_models"]
    assert {(s["mode"], s["count"]) for s in references["sets"]} == {("online", 2), ("offline", 2)}
    assert references["models"] == 4 and references["cached"] == 0 and references["to_train"] == 4
    assert references["training_images"] > 0 and before["estimate_seconds"] > 0
    assert before["target"] == {"views": 1, "views_cached": 0, "images_to_score": 120 + 1397}
    assert before["throughput"]["training_images_per_s"] > 0
    assert before["cache_bytes"] > 4 * 11_000_000  # four ResNet18 state dicts, and logits

    text = run_cli("plan", reference_policy)
    assert text.returncode == 0, text.stderr
    assert "reference models: 4 (2 online (0 cached), 2 offline (0 cached)): 4 to train" \
        in text.stdout  # fmt: skip
    assert re.search(r"^  reference training +\S+ +4 models to train", text.stdout, flags=re.M)
    assert re.search(r"^  total +\d", text.stdout, flags=re.M)

    completed = run_cli("run", reference_policy, "-q")
    assert completed.returncode in (0, 1), completed.stderr
    result = json.loads((reference_policy.parent / "report-reference/result.json").read_text())
    assert sum(len(s["models"]) for s in result["references"]["sets"]) == 4
    after = plan_json(run_cli, reference_policy)
    assert after["reference_models"]["cached"] == 4 and after["reference_models"]["to_train"] == 0
    assert after["reference_models"]["training_images"] == 0
    assert after["target"]["views_cached"] == 1
    assert after["estimate_seconds"] < before["estimate_seconds"]


def test_max_minutes_refuses_a_run_up_front(folder: Path, run_cli: RunCli) -> None:
    policy = write_policy(folder, "limited", runtime={"max_minutes": 0.001})
    completed = run_cli("run", policy)
    assert completed.returncode == 2
    (line,) = error_lines(completed.stderr)
    assert line.startswith("error: runtime.max_minutes: the run is estimated at ")
    assert "over the limit of 0.001" in line and "mia-audit plan" in line
    assert not (folder / "report-limited").exists()
    roomy = write_policy(folder, "roomy", runtime={"max_minutes": 600})
    assert run_cli("run", roomy, "-q").returncode in (0, 1)


# --- init -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["target.pt", "target.onnx"])
def test_init_writes_a_policy_that_validates(folder: Path, run_cli: RunCli, model: str) -> None:
    out = folder / f"init-{Path(model).suffix[1:]}" / "policy.yaml"
    out.parent.mkdir()
    args = ["--members", folder / "members.npz", "--non-members", folder / "non_members.npz"]
    completed = run_cli("init", "--model", folder / model, *args, "-o", out)
    assert completed.returncode == 0, completed.stderr
    text = out.read_text()
    assert text.startswith("# yaml-language-server: $schema=policy.schema.json\n")
    schema = json.loads((out.parent / "policy.schema.json").read_text())
    jsonschema.validate(yaml.safe_load(text), schema)
    document = yaml.safe_load(text)
    assert document["model"]["num_classes"] == 10
    assert document["data"]["members"] == "../members.npz"
    if model == "target.pt":  # the architecture is read off the state dict's parameters
        assert document["model"]["architecture"] == "resnet18"
        assert document["model"]["cifar_stem"] is False
    else:
        assert "architecture" not in document["model"]
    assert "REVIEW" in text and "reference_training:" in text and "max_tpr_at_fpr" in text
    assert "# 200 images, 3x32x32" in text
    checked = run_cli("validate", out)
    assert checked.returncode == 0, checked.stderr
    again = run_cli("init", "--model", folder / model, *args, "-o", out)
    assert again.returncode == 2 and "--force" in again.stderr


# --- polish: completion, help, the device alias, render's wrong file -------------------------


def test_shell_completion_offers_commands_and_device_choices(run_cli: RunCli) -> None:
    """What bash asks the program once `mia-audit --install-completion` has installed it."""
    import os
    import subprocess

    from tests.conftest import CONSOLE_SCRIPT

    def complete(words: str) -> list[str]:
        word = len(words.split()) - (0 if words.endswith(" ") else 1)  # the one completed
        env = {**os.environ, "_MIA_AUDIT_COMPLETE": "complete_bash", "COMP_WORDS": words,
               "COMP_CWORD": str(word)}  # fmt: skip
        completed = subprocess.run(
            [str(CONSOLE_SCRIPT)], capture_output=True, text=True, env=env, check=False
        )
        return completed.stdout.split()

    assert complete("mia-audit pl") == ["plan"]
    assert complete("mia-audit run p.yaml --device ") == ["auto", "cpu", "cuda", "gpu"]
    assert "--install-completion" in run_cli("--help").stdout


def test_help_lists_the_choices(run_cli: RunCli) -> None:
    for command in ("run", "render"):
        text = run_cli(command, "--help").stdout
        assert "list[str]" not in text and "json, html, markdown, junit" in text, text
    assert "<auto|cpu|cuda|gpu>" in run_cli("run", "--help").stdout


def test_device_gpu_is_cuda(folder: Path, run_cli: RunCli) -> None:
    """`--device gpu` means cuda: planned on cuda here, or refused with one line without one."""
    import torch

    completed = run_cli("plan", write_policy(folder, "gpu"), "--device", "gpu", "--json")
    if torch.cuda.is_available():
        assert completed.returncode == 0 and json.loads(completed.stdout)["device"] == "cuda"
    else:
        assert completed.returncode in (2, 3), completed.stderr
        assert "cuda" in completed.stderr and "pydantic" not in completed.stderr
        assert "Traceback" not in completed.stderr


def test_render_names_the_kind_of_file_it_got(folder: Path, run_cli: RunCli) -> None:
    policy = write_policy(folder, "not-a-result")
    completed = run_cli("render", policy)
    assert completed.returncode == 2
    (line,) = error_lines(completed.stderr)
    assert "a mia-audit policy, not a result.json" in line and "run the policy first" in line


def test_validate_names_the_file_whose_image_shape_differs(folder: Path, run_cli: RunCli) -> None:
    """The members file is the odd one for a model with a fixed input size: validate (and run)
    name it, not the non-members file read after it. (A model that runs on both sizes with two
    files has no odd one: the members' shape decides, tests/e2e/test_bad_inputs.py.)"""
    import numpy as np

    with np.load(folder / "members.npz") as members:
        arrays = dict(members)
    arrays["x"] = np.ascontiguousarray(arrays["x"][:, :28, :28, :])
    np.savez(folder / "cropped.npz", **arrays)
    data = {"members": "cropped.npz", "non_members": "non_members.npz"}
    model = {"path": "target.onnx", "num_classes": 10}  # takes 3x32x32 only
    policy = write_policy(folder, "cropped", data=data, model=model)
    for command in ("validate", "run"):
        completed = run_cli(command, policy)
        assert completed.returncode == 2, (command, completed.stderr)
        (line,) = error_lines(completed.stderr)
        assert line.startswith("error: data.members: ") and "cropped.npz" in line, line
        assert "(3, 28, 28)" in line and "the model takes (3, 32, 32)" in line, line
