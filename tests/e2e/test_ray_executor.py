"""The Ray executor (`runtime.executor: {kind: ray}`) end to end through `mia-audit run`.

Every run audits the overfit digits target (100 members, 100 non-members: less work than a real
audit, since these tests compare executors, not verdicts) with LiRA (offline) and RMIA on 4
reference models of a small CNN (a `module:function` factory in the policy's folder, so that
each model trains in a second or two) drawn from a 200-sample population. A local run is the
reference. A Ray instance the run starts itself (`address: local`) gives the same `result.json`
attacks (bit for bit: its tasks train with as many torch threads as the local run), and the
cache is shared both ways: models trained on Ray are reused by a local run, and models trained
locally by a Ray run.

A two-node cluster on this machine (`ray.cluster_utils.Cluster`, started by this module) is then
the cluster the runs connect to: a worker process killed mid-task is retried and the run gives
the same attacks, and so does a run that loses a node mid-task; a driver interrupted (SIGINT)
after its first model is cached leaves the finished models cached and the rerun trains only the
rest; a task whose training code raises is exit 3 naming the model and the worker's error. An
address nothing answers at is exit 2 naming it, and asking for Ray where it cannot be imported
is exit 2 with the install command.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch

from tests.conftest import (
    BASE_POLICY,
    CI_LIMIT_SECONDS,
    CONSOLE_SCRIPT,
    SMALL_CNN,
    SMALL_RECIPE,
    RunCli,
    merged_policy,
    policy_file,
    without_keys,
    write_small_population,
)
from tests.interrupting import interrupt, model_files

if TYPE_CHECKING:
    from ray.cluster_utils import Cluster

pytestmark = pytest.mark.ray

MODELS = 4
#: The torch threads a local run trains with; Ray tasks reserve as many CPUs (and train with as
#: many threads), which is what makes their models bit-identical to the local ones.
THREADS = torch.get_num_threads()
RECIPE = SMALL_RECIPE
#: Less work than a real audit, whatever the machine: 100 members and 100 non-members and a
#: 200-sample population are enough to show Ray's models and results equal the local ones.
POPULATION = 200
ATTACKS = [
    {"name": "lira", "reference_models": MODELS, "mode": "offline"},
    {"name": "rmia", "reference_models": MODELS},
]
DIVERGING_CNN = '''"""A model whose training fails on its first batch, wherever it trains."""
from torch import nn


class Diverging(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.linear = nn.Linear(3 * 32 * 32, num_classes)

    def forward(self, x):
        if self.training:
            raise FloatingPointError("loss is nan at step 1\\n(second line)")
        return self.linear(x.flatten(1))


def diverging_cnn(num_classes):
    return Diverging(num_classes)
'''
#: LiRA and RMIA on the reference models, trained on a small population.
AUDIT = merged_policy(
    BASE_POLICY,
    data={"population": "population_small.npz", "max_per_side": 100},
    attacks=ATTACKS,
)
TASK_TITLE = "ray::mia_audit_reference_training"


def write_policy(
    folder: Path,
    name: str,
    executor: Any = "local",
    cache: str = ".mia-cache",
    recipe: dict[str, Any] = RECIPE,
    outputs: str = "out-{name}",
) -> Path:
    """The audit every test here runs, on `executor`, caching in `cache`."""
    runtime = {"cache_dir": cache, "executor": executor}
    return policy_file(
        folder, name, AUDIT, reference_training=recipe, outputs={"dir": outputs}, runtime=runtime
    )


def ray_executor(address: str, **keys: Any) -> dict[str, Any]:
    return {"kind": "ray", "address": address, "cpus_per_task": THREADS, **keys}


def attacks(result_dir: Path) -> list[Any]:
    """result.json's attacks without their timings."""
    result = json.loads((result_dir / "result.json").read_text())
    return without_keys(result["attacks"], {"seconds"})  # type: ignore[no-any-return]


def output_of(completed: subprocess.CompletedProcess[str]) -> str:
    return completed.stdout + completed.stderr


# --- a Ray instance the run starts, and the local reference -----------------------------------


@pytest.fixture(scope="module")
def folder(folder: Path) -> Path:
    """The digits target with a small population and the two factories."""
    write_small_population(folder, POPULATION)
    (folder / "small_cnn.py").write_text(SMALL_CNN)
    (folder / "diverging_cnn.py").write_text(DIVERGING_CNN)
    return folder


@pytest.fixture(scope="module")
def local_attacks(folder: Path, run_cli: RunCli) -> list[Any]:
    """The reference: the audit with the local executor (its cache: .cache-local)."""
    completed = run_cli("run", write_policy(folder, "local", cache=".cache-local"))
    assert completed.returncode == 0, output_of(completed)
    assert f"reference models: {MODELS} trained" in completed.stderr
    return attacks(folder / "out-local")


@pytest.fixture(scope="module")
def ray_run(folder: Path, run_cli: RunCli) -> subprocess.CompletedProcess[str]:
    """The same audit on a Ray instance the run starts (its cache: .cache-ray)."""
    policy = write_policy(folder, "ray", ray_executor("local"), cache=".cache-ray")
    return run_cli("run", policy)


def test_ray_run_gives_the_local_attacks(
    folder: Path, ray_run: subprocess.CompletedProcess[str], local_attacks: list[Any]
) -> None:
    assert ray_run.returncode == 0, output_of(ray_run)
    assert f"ray: {MODELS} reference models trained on 1 machine" in ray_run.stderr
    assert f"reference models: {MODELS} trained" in ray_run.stderr
    assert attacks(folder / "out-ray") == local_attacks


def test_models_trained_on_ray_are_reused_by_a_local_run(
    folder: Path,
    ray_run: subprocess.CompletedProcess[str],
    local_attacks: list[Any],
    run_cli: RunCli,
) -> None:
    assert ray_run.returncode == 0, output_of(ray_run)
    completed = run_cli("run", write_policy(folder, "local-after-ray", cache=".cache-ray"))
    assert completed.returncode == 0, output_of(completed)
    assert f"reference models: 0 trained, {MODELS} reused from the cache" in completed.stderr
    assert "refused" not in output_of(completed)
    assert attacks(folder / "out-local-after-ray") == local_attacks


def test_models_trained_locally_are_reused_by_a_ray_run(
    folder: Path, local_attacks: list[Any], run_cli: RunCli
) -> None:
    policy = write_policy(folder, "ray-after-local", ray_executor("local"), cache=".cache-local")
    completed = run_cli("run", policy)
    assert completed.returncode == 0, output_of(completed)
    assert f"reference models: 0 trained, {MODELS} reused from the cache" in completed.stderr
    assert "ray:" not in completed.stderr  # nothing left to train: Ray is not even started
    assert attacks(folder / "out-ray-after-local") == local_attacks


# --- a two-node cluster on this machine ---------------------------------------------------------


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[Cluster]:
    """A head node and a worker node, each with as many CPUs as a task reserves."""
    from ray.cluster_utils import Cluster

    started = Cluster(
        initialize_head=True, head_node_args={"num_cpus": THREADS, "include_dashboard": False}
    )
    try:
        started.add_node(num_cpus=THREADS)
        started.wait_for_nodes()
        yield started
    finally:
        started.shutdown()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def cluster(two_nodes: Cluster) -> str:
    """The two-node cluster's address."""
    return str(two_nodes.address)


def _descends_from(pid: int, ancestor: int) -> bool:
    """Whether process `pid` descends from `ancestor` (the cluster's processes descend from
    this test process; other Ray instances on the machine are left alone)."""
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        if pid == ancestor:
            return True
    return False


def _training_workers(ancestor: int | None = None) -> list[int]:
    """The cluster's worker processes running a training task now (Ray titles them so), of
    the processes below `ancestor` (default: this test process)."""
    ancestor = os.getpid() if ancestor is None else ancestor
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if title.startswith(TASK_TITLE) and _descends_from(int(entry.name), ancestor):
            found.append(int(entry.name))
    return found


def _first_training_worker(process: subprocess.Popen[str], ancestor: int | None = None) -> int:
    """The pid of the first worker process (below `ancestor`) seen training. No deadline: the
    run ending first fails the test, a slow machine only makes it wait longer."""
    while process.poll() is None:
        workers = _training_workers(ancestor)
        if workers:
            return workers[0]
        time.sleep(0.05)
    pytest.fail(f"the run ended (exit {process.returncode}) before a worker was seen training")


def _run_with_fault(
    policy: Path, fault: Callable[[subprocess.Popen[str]], None]
) -> tuple[int, str]:
    """Run the policy through the console script, inflict `fault` on it; exit code, output.

    The output goes to a file: a pipe nobody reads while the fault waits could fill and stall
    the run."""
    log = policy.with_suffix(".log")
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(CONSOLE_SCRIPT), "run", str(policy)],
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
    try:
        fault(process)
        process.wait(timeout=CI_LIMIT_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, log.read_text()


def test_a_worker_killed_mid_task_is_retried(
    folder: Path, cluster: str, local_attacks: list[Any]
) -> None:
    executor = ray_executor(cluster, models_per_task=1, max_retries=2)
    policy = write_policy(folder, "killed", executor, cache=".cache-killed")
    killed: list[int] = []

    def kill_a_worker(process: subprocess.Popen[str]) -> None:
        killed.append(_first_training_worker(process))
        os.kill(killed[0], signal.SIGKILL)

    code, output = _run_with_fault(policy, kill_a_worker)
    assert killed and not Path(f"/proc/{killed[0]}").exists()
    assert code == 0, output
    assert f"ray: {MODELS} reference models trained" in output
    assert len(model_files_in(folder / ".cache-killed")) == MODELS
    assert attacks(folder / "out-killed") == local_attacks


def test_a_node_lost_mid_task_is_retried(
    folder: Path, two_nodes: Cluster, local_attacks: list[Any]
) -> None:
    """A third node joins; once one of its workers trains, the node is killed outright."""
    doomed = two_nodes.add_node(num_cpus=THREADS)
    two_nodes.wait_for_nodes()
    raylet = doomed.all_processes["raylet"][0].process.pid
    executor = ray_executor(str(two_nodes.address), models_per_task=1, max_retries=2)
    policy = write_policy(folder, "node-lost", executor, cache=".cache-node-lost")
    lost: list[int] = []

    def lose_the_node(process: subprocess.Popen[str]) -> None:
        lost.append(_first_training_worker(process, ancestor=raylet))
        two_nodes.remove_node(doomed, allow_graceful=False)

    code, output = _run_with_fault(policy, lose_the_node)
    assert lost and not Path(f"/proc/{raylet}").exists()
    assert code == 0, output
    assert f"ray: {MODELS} reference models trained" in output
    assert attacks(folder / "out-node-lost") == local_attacks


def model_files_in(cache: Path) -> list[Path]:
    return sorted((cache / "models").rglob("*.pt"))


def test_an_interrupted_cluster_run_resumes_from_the_cache(
    folder: Path, cluster: str, local_attacks: list[Any], run_cli: RunCli
) -> None:
    """The run caches in .mia-cache and reports to report/ (as `interrupt` expects)."""
    executor = ray_executor(cluster, models_per_task=1)
    policy = write_policy(folder, "interrupted", executor, outputs="report")
    stopped = interrupt(folder, policy, signal.SIGINT)
    assert stopped.returncode == 3, stopped.stderr
    assert "interrupted" in stopped.stderr and "Traceback" not in stopped.stderr
    assert stopped.temporary_files == [] and stopped.report_files == []
    kept = len(model_files(folder))
    assert 1 <= kept < MODELS, f"{kept} models cached when the run was interrupted"

    completed = run_cli("run", policy)
    assert completed.returncode == 0, output_of(completed)
    trained, reused = MODELS - kept, kept
    assert f"reference models: {trained} trained, {reused} reused" in completed.stderr
    assert f"ray: {trained} reference models trained" in completed.stderr
    assert attacks(folder / "report") == local_attacks


def test_a_task_that_fails_for_good_exits_3_naming_the_model(
    folder: Path, cluster: str, run_cli: RunCli
) -> None:
    recipe = {**RECIPE, "architecture": "diverging_cnn:diverging_cnn"}
    executor = ray_executor(cluster, max_retries=1)
    policy = write_policy(folder, "diverging", executor, cache=".cache-diverging", recipe=recipe)
    completed = run_cli("run", policy)
    assert completed.returncode == 3, output_of(completed)
    pattern = (
        r"reference model [0-9a-f]{12} failed on the Ray cluster: "
        r"FloatingPointError: loss is nan at step 1;"
    )
    assert re.search(pattern, completed.stderr), completed.stderr
    assert "(second line)" not in completed.stderr and "Traceback" not in completed.stderr
    assert not (folder / "out-diverging" / "result.json").exists()


# --- addresses and installs: exit 2 ---------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_unreachable_cluster_exits_2_naming_the_address(
    folder: Path, run_cli: RunCli, scheme: str
) -> None:
    address = f"{scheme}127.0.0.1:{_closed_port()}"
    policy = write_policy(folder, f"unreachable{len(scheme)}", cache=".cache-unreachable")
    override = json.dumps(ray_executor(address, connect_timeout=5))
    completed = run_cli("run", policy, "--executor", override)
    assert completed.returncode == 2, output_of(completed)
    assert f"cannot reach the Ray cluster at {address}" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert not (folder / f"out-unreachable{len(scheme)}" / "result.json").exists()


def _without_ray(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The console script's entry point in a Python where `import ray` fails."""
    code = (
        "import sys; sys.modules['ray'] = None; from mia_audit.cli import main; "
        "sys.argv = ['mia-audit', *sys.argv[1:]]; main()"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=CI_LIMIT_SECONDS,
        check=False,
    )


def test_ray_without_ray_installed_exits_2_with_the_install_command(folder: Path) -> None:
    ray_policy = write_policy(folder, "no-ray", ray_executor("auto"))
    local_policy = write_policy(folder, "no-ray-local")
    for completed in (
        _without_ray("validate", ray_policy),
        _without_ray("run", local_policy, "--executor", "ray"),
    ):
        assert completed.returncode == 2, output_of(completed)
        assert "runtime.executor" in completed.stderr or "--executor" in completed.stderr
        assert 'pip install "mia-audit[ray]"' in completed.stderr
        assert "Traceback" not in completed.stderr
    assert _without_ray("validate", local_policy).returncode == 0  # Ray is needed only for ray


def test_executor_option_names_unknown_kinds_and_keys(folder: Path, run_cli: RunCli) -> None:
    policy = write_policy(folder, "option")
    unknown_kind = run_cli("run", policy, "--executor", "rya")
    assert unknown_kind.returncode == 2, output_of(unknown_kind)
    assert "unknown executor kind 'rya' (did you mean 'ray'?)" in unknown_kind.stderr
    unknown_key = run_cli("run", policy, "--executor", "{kind: ray, gpus_per_tsk: 1}")
    assert unknown_key.returncode == 2, output_of(unknown_key)
    assert "gpus_per_tsk" in unknown_key.stderr and "gpus_per_task" in unknown_key.stderr
