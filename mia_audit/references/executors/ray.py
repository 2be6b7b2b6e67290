"""The Ray executor: trains reference models on a Ray cluster (`runtime.executor: {kind: ray}`).

The shared training data (and the images the models are run on) go into the object store once
(`ray.put`); each remote task trains a group of `models_per_task` models (in lockstep on a GPU,
as the local executor does), builds each one afresh from its CPU state dict and computes the
logits the attacks score on the worker that trained it, so the weights do not travel twice. The
driver collects results as they finish (`ray.wait`) and hands each model with its logits to
`on_trained`, which caches both at once: a driver interrupted after k models keeps them. The
cache lives on the driver; the workers need no shared filesystem.

Ray is an optional extra (`pip install "mia-audit[ray]"`) and is imported only when a run
uses this executor; the config class below imports nothing of it, so the policy schema builds
without Ray.

Determinism: a model depends only on its job (rows and seed), the recipe, the code and the
torch build. The number of threads torch trains with on a CPU changes the rounding, so it is
part of the recipe (`reference_training.threads`, default 1) and the trainer sets it on every
executor: a CPU worker trains bit for bit the model a local run trains, whatever
`cpus_per_task`, on the same CPU architecture and torch build. GPU training is not
bit-reproducible across runs in general (cuDNN picks its algorithms), locally or on a cluster.

Faults: a task whose worker process or node dies is re-run up to `max_retries` times by Ray; an
exception raised by the training code is not retried (it would fail again) and ends the run
with exit 3, naming the models and the worker's one-line error. A cluster that cannot be
reached is exit 2 naming the address, after at most `connect_timeout` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import socket
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from mia_audit._version import __version__
from mia_audit.errors import AuditError, MiaAuditError, PolicyError
from mia_audit.progress import Advance, Notify
from mia_audit.references.executors import register
from mia_audit.references.executors.base import (
    Architecture,
    ExecutorConfig,
    InferenceData,
    ModelLogits,
    OnTrained,
    TrainingTask,
)
from mia_audit.references.executors.local import GPU_CONCURRENCY
from mia_audit.references.settings import TRAINER_VERSION, TrainingRecipe
from mia_audit.references.training import TrainingData
from mia_audit.store.cache import StateDict

if TYPE_CHECKING:
    from types import ModuleType

#: How to install what this executor needs (the `ray` extra pulls in Ray with its client).
INSTALL = 'pip install "mia-audit[ray]"'
#: The name of the remote training task: Ray titles a worker process running it
#: `ray::<name>`, which is how `ps` (and the tests) find it.
TASK_NAME = "mia_audit_reference_training"
#: How often the driver wakes while waiting for results (it checks for Ctrl-C meanwhile).
_WAIT_SECONDS = 1.0
_ADDRESS = re.compile(r"^(ray://)?(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")


class RayExecutorConfig(ExecutorConfig):
    """`runtime.executor: {kind: ray, ...}`: train reference models on a Ray cluster."""

    kind: Literal["ray"] = "ray"
    address: str = Field(
        "auto",
        description=(
            "The cluster: `auto` (RAY_ADDRESS, else the cluster `ray start` last started on "
            "this machine), `local` (start a Ray instance on this machine for the run), "
            "`ray://host:10001` (Ray Client, e.g. a KubeRay head service), or `host:6379` "
            "(the head node's GCS address, from a machine inside the cluster)."
        ),
    )
    models_per_task: int | None = Field(
        None,
        ge=1,
        le=256,
        description=(
            f"Models one task trains (in lockstep on a GPU). Default: {GPU_CONCURRENCY} when "
            "gpus_per_task > 0, else 1."
        ),
    )
    gpus_per_task: float = Field(
        0,
        ge=0,
        le=64,
        description=(
            "GPUs each task reserves (fractions share a GPU); above 0 the models train and "
            "run on the worker's GPU, at 0 on its CPUs."
        ),
    )
    cpus_per_task: int = Field(
        1,
        ge=1,
        le=1024,
        description=(
            "CPUs each task reserves, and the torch threads it computes logits with; models "
            "train with reference_training.threads, as in a local run."
        ),
    )
    max_retries: int = Field(
        3,
        ge=0,
        le=100,
        description=(
            "Times a task is re-run after its worker process or node dies (errors raised by "
            "the training code are not retried)."
        ),
    )
    connect_timeout: float = Field(
        15.0,
        gt=0,
        le=600,
        description="Seconds to wait for the cluster's address to answer before exit 2.",
    )

    @field_validator("address")
    @classmethod
    def _address_form(cls, value: str) -> str:
        if value in ("auto", "local") or _ADDRESS.match(value):
            return value
        raise ValueError(
            f"{value!r} is not a Ray address; use auto, local, ray://host:10001 or host:6379"
        )

    @model_validator(mode="after")
    def _ray_installed(self) -> RayExecutorConfig:
        import_ray()
        return self

    @property
    def device(self) -> str:
        """Where the tasks train and run the models."""
        return "cuda" if self.gpus_per_task > 0 else "cpu"

    @property
    def models_at_once(self) -> int:
        if self.models_per_task is not None:
            return self.models_per_task
        return GPU_CONCURRENCY if self.gpus_per_task > 0 else 1


def import_ray() -> ModuleType:
    """The `ray` module; exit 2 with the install command when it is missing."""
    try:
        import ray
    except ImportError as error:
        raise PolicyError(
            f"runtime.executor: kind ray needs Ray, which cannot be imported here ({error}); "
            f"install it with: {INSTALL}"
        ) from None
    return ray


# --- what runs on a worker ----------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerSettings:
    """How a task trains: device, torch threads, models at once, and the driver's versions
    (a worker running other training code would train other models under the same keys)."""

    device: str
    threads: int
    models_at_once: int
    version: str = __version__
    trainer_version: int = TRAINER_VERSION


@dataclass(frozen=True)
class TrainedModel:
    """One model as a task returns it: its key, CPU state dict and logits."""

    key: str
    state: StateDict
    logits: ModelLogits


@dataclass(frozen=True)
class GroupResult:
    """What a task returns: its models, the machine it ran on, and how long it took."""

    models: tuple[TrainedModel, ...]
    host: str
    seconds: float


def train_group(
    tasks: Sequence[TrainingTask],
    data: TrainingData,
    inference: InferenceData | None,
    recipe: TrainingRecipe,
    architecture: Architecture,
    settings: WorkerSettings,
) -> GroupResult:
    """The remote task: train the group on this worker, then run each model on the images its
    task names. Plain Python, so it also runs (and is tested) without Ray."""
    import torch

    from mia_audit.references.executors.local import LocalExecutor

    start = time.perf_counter()
    _check_versions(settings)
    torch.set_num_threads(settings.threads)
    trained: list[tuple[TrainingTask, StateDict]] = []

    def keep(task: TrainingTask, state: StateDict, logits: ModelLogits | None = None) -> None:
        trained.append((task, state))

    executor = LocalExecutor(settings.device, settings.models_at_once)
    with _shared_arrays_read_only():
        executor.train(tasks, data, recipe, architecture, keep)
        models = tuple(
            TrainedModel(task.key, state, _logits(task, state, architecture, inference, settings))
            for task, state in trained
        )
    return GroupResult(models, socket.gethostname(), time.perf_counter() - start)


def _check_versions(settings: WorkerSettings) -> None:
    if (settings.version, settings.trainer_version) != (__version__, TRAINER_VERSION):
        raise PolicyError(
            f"runtime.executor: the Ray worker on {socket.gethostname()} runs mia-audit "
            f"{__version__} "
            f"(trainer {TRAINER_VERSION}) and the driver {settings.version} (trainer "
            f"{settings.trainer_version}); install mia-audit {settings.version} on every node "
            "of the cluster"
        )


@contextlib.contextmanager
def _shared_arrays_read_only() -> Iterator[None]:
    """Arrays from the object store are read-only; torch warns when it wraps one, but the
    trainer and inference only read them."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        yield


def _logits(
    task: TrainingTask,
    state: StateDict,
    architecture: Architecture,
    inference: InferenceData | None,
    settings: WorkerSettings,
) -> ModelLogits:
    """The task's wanted logits, from a model built from the CPU state dict as the driver
    would build it (so they equal what the driver would compute on this device)."""
    if inference is None or not task.outputs:
        return {}
    from mia_audit.models.classifier import TorchClassifier
    from mia_audit.models.inference import predict

    module = architecture.build()
    module.load_state_dict(state)
    classifier = TorchClassifier(module, settings.device)
    logits: ModelLogits = {}
    for part, views in task.outputs:
        values = predict(
            classifier, inference.images[part], views, inference.preprocess, inference.batch_size
        )
        logits.update({(part, view): value for view, value in zip(views, values, strict=True)})
    return logits


# --- the driver ---------------------------------------------------------------------------------


@register
class RayExecutor:
    """Trains reference models on a Ray cluster; see the module docstring.

    It connects on the first `train` (a session the caller opened is used as it is) and
    `close` disconnects, or stops the instance it started for `address: local`. `trained`
    counts the models it trained; `notify` hears a summary after each `train`.
    """

    kind: ClassVar[str] = "ray"
    config_type: ClassVar[type[ExecutorConfig]] = RayExecutorConfig
    predicts_where_trained: ClassVar[bool] = True

    def __init__(self, config: RayExecutorConfig, notify: Notify | None = None) -> None:
        self.config = config
        self.notify = notify
        self.inference_device = config.device
        self.trained = 0
        self._ray: ModuleType | None = None
        self._opened = False

    @classmethod
    def create(cls, config: Any, *, device: str, notify: Notify | None) -> RayExecutor:
        assert isinstance(config, RayExecutorConfig)
        import_ray()
        if device == "cuda" and config.gpus_per_task == 0 and notify is not None:
            notify(
                "runtime.executor: Ray tasks reserve no GPU (gpus_per_task: 0), so reference "
                "models train on the workers' CPUs"
            )
        return cls(config, notify)

    def train(
        self,
        tasks: Sequence[TrainingTask],
        data: TrainingData,
        recipe: TrainingRecipe,
        architecture: Architecture,
        on_trained: OnTrained,
        advance: Advance | None = None,
        inference: InferenceData | None = None,
    ) -> None:
        if not tasks:
            return
        ray = self.connect()
        config = self.config
        settings = WorkerSettings(config.device, config.cpus_per_task, config.models_at_once)
        remote = ray.remote(train_group).options(
            name=TASK_NAME,
            num_cpus=config.cpus_per_task,
            num_gpus=config.gpus_per_task,
            max_retries=config.max_retries,
            retry_exceptions=False,
        )
        shared = (ray.put(data), ray.put(inference), ray.put(recipe), ray.put(architecture))
        step = config.models_at_once
        groups = [tuple(tasks[i : i + step]) for i in range(0, len(tasks), step)]
        pending = {remote.remote(group, *shared, settings): group for group in groups}
        self._collect(ray, pending, recipe, on_trained, advance)

    def close(self) -> None:
        """Disconnect (stopping an instance started for `address: local`); only a session
        this executor opened."""
        if self._ray is not None and self._opened:
            self._ray.shutdown()
        self._ray, self._opened = None, False

    # connecting

    def connect(self) -> ModuleType:
        """Connect to the cluster now (the first `train` does otherwise); the `ray` module."""
        if self._ray is not None:
            return self._ray
        ray = import_ray()
        if not ray.is_initialized():
            self._init(ray)
            self._opened = True
        self._ray = ray
        self._check_resources(ray)
        return ray

    def _init(self, ray: ModuleType) -> None:
        address = self.config.address
        options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
        if address == "local":
            _keep_token_off_disk()
            options["include_dashboard"] = False
        else:
            self._check_reachable(_explicit_address(address))
        try:
            ray.init(address=address, **options)
        except Exception as error:  # Ray raises ConnectionError, ValueError, RuntimeError...
            raise PolicyError(
                f"runtime.executor.address: cannot connect to the Ray cluster at {address} "
                f"({_one_line(error)}); check the address and that the cluster is up "
                f"(`ray status` on its head node), or install the Ray client: {INSTALL}"
            ) from None

    def _check_reachable(self, address: str | None) -> None:
        """Fail in `connect_timeout` seconds when nothing answers at the address (Ray itself
        retries for minutes, then ends the process)."""
        if address is None:
            return
        match = _ADDRESS.match(address)
        if match is None:
            return  # Ray reports an address it cannot parse itself
        host, port = match["host"].strip("[]"), int(match["port"])
        timeout = self.config.connect_timeout
        try:
            with socket.create_connection((host, port), timeout=timeout):
                pass
        except OSError as error:
            reason = error.strerror or type(error).__name__
            if isinstance(error, TimeoutError):
                reason = f"no answer within {timeout:g} s"
            raise PolicyError(
                f"runtime.executor.address: cannot reach the Ray cluster at {address} "
                f"({reason}); check the address and port, that the cluster is up and that "
                "this machine can reach it (a firewall, a port-forward to the head node)"
            ) from None

    @classmethod
    def preflight(cls, config: Any) -> None:
        """What `connect` would refuse, checked without starting or joining a cluster (for
        `mia-audit validate`): an address nothing answers at, a task larger than this machine
        for `address: local`."""
        assert isinstance(config, RayExecutorConfig)
        import_ray()
        if config.address == "local":
            _check_fits(config, {"CPU": float(os.cpu_count() or 1), "GPU": _local_gpus()})
            return
        address = _explicit_address(config.address) or os.environ.get("RAY_ADDRESS")
        cls(config)._check_reachable(address)

    def _check_resources(self, ray: ModuleType) -> None:
        """Refuse a task no node of the instance this run started can ever fit (it would
        wait forever); on a cluster that may add nodes, say so."""
        if self._opened and self.config.address == "local":
            try:
                _check_fits(self.config, ray.cluster_resources())
            except PolicyError:
                self.close()
                raise
        if self.notify is None:
            return
        try:
            nodes = [node for node in ray.nodes() if node.get("Alive")]
        except Exception:  # only a courtesy check
            return
        config = self.config
        fits = any(
            node["Resources"].get("CPU", 0) >= config.cpus_per_task
            and node["Resources"].get("GPU", 0) >= config.gpus_per_task
            for node in nodes
        )
        if not fits:
            self.notify(
                f"runtime.executor: no node of the Ray cluster has {config.cpus_per_task} CPUs "
                f"and {config.gpus_per_task:g} GPUs free for a task now; the tasks wait until "
                "the cluster adds one (lower cpus_per_task / gpus_per_task if it never will)"
            )

    # collecting

    def _collect(
        self,
        ray: ModuleType,
        pending: dict[Any, tuple[TrainingTask, ...]],
        recipe: TrainingRecipe,
        on_trained: OnTrained,
        advance: Advance | None,
    ) -> None:
        """Hand each model to `on_trained` as its task finishes; cancel the rest on the way
        out (an error, Ctrl-C), so that the cluster does not go on training for nobody."""
        start, images, hosts = time.perf_counter(), 0, set()
        total = sum(len(group) for group in pending.values())
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=_WAIT_SECONDS)
                for ref in done:
                    group = pending.pop(ref)
                    result = self._result(ray, ref, group)
                    hosts.add(result.host)
                    by_key = {task.key: task for task in group}
                    for model in result.models:
                        on_trained(by_key[model.key], model.state, model.logits)
                        self.trained += 1
                    done_images = sum(len(task.job.index) for task in group) * recipe.epochs
                    images += done_images
                    if advance is not None:
                        advance(done_images)
        finally:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
        seconds = time.perf_counter() - start
        if self.notify is not None:
            self.notify(
                f"ray: {total} reference models trained on {len(hosts)} "
                f"machine{'s' if len(hosts) != 1 else ''} in {seconds:.1f} s "
                f"({images / max(seconds, 1e-9):,.0f} training images/s across the cluster)"
            )

    def _result(self, ray: ModuleType, ref: Any, group: tuple[TrainingTask, ...]) -> GroupResult:
        """The task's result; its failure as the tool's error, naming its models."""
        try:
            result = ray.get(ref)
        except ray.exceptions.RayTaskError as error:
            cause = error.cause if error.cause is not None else error
            if isinstance(cause, MiaAuditError):
                raise type(cause)(str(cause)) from None
            raise AuditError(
                f"runtime.executor: {_models(group)} failed on the Ray cluster: "
                f"{type(cause).__name__}: {_one_line(cause)}; fix the cause and run again "
                "(the models finished so far are cached)"
            ) from None
        except ray.exceptions.RayError as error:
            raise AuditError(
                f"runtime.executor: {_models(group)} failed on the Ray cluster after "
                f"{self.config.max_retries} retries: {type(error).__name__}: "
                f"{_one_line(error)}; run again to retry (the models finished so far are "
                "cached), or raise max_retries"
            ) from None
        assert isinstance(result, GroupResult)
        return result


def _check_fits(config: RayExecutorConfig, resources: Any) -> None:
    """`address: local` is one node with this machine's resources and no autoscaler: a task
    that asks for more can never start (exit 2 naming the key)."""
    for key, name, asked in (
        ("cpus_per_task", "CPU", float(config.cpus_per_task)),
        ("gpus_per_task", "GPU", float(config.gpus_per_task)),
    ):
        available = float(resources.get(name, 0.0))
        if asked > available:
            raise PolicyError(
                f"runtime.executor.{key}: is {asked:g} but the Ray instance `address: local` "
                f"starts on this machine has {available:g} {name}s, so no task could ever "
                f"start; set {key} to at most {available:g}, or give the address of a cluster "
                "with larger nodes"
            )


def _local_gpus() -> float:
    import torch

    return float(torch.cuda.device_count()) if torch.cuda.is_available() else 0.0


def _explicit_address(address: str) -> str | None:
    """The host:port the policy or RAY_ADDRESS names, if any (`auto` may name none)."""
    if address == "auto":
        return os.environ.get("RAY_ADDRESS") or None
    return address


def _keep_token_off_disk() -> None:
    """A local instance authenticates with a token (Ray's default); Ray would otherwise write
    a new one to ~/.ray/auth_token, and mia-audit writes nothing under the home folder. The
    token lives in the environment of this process and the instance's, for this process only.
    A token or mode the user set is left alone."""
    if "RAY_AUTH_MODE" in os.environ or "RAY_AUTH_TOKEN" in os.environ:
        return
    import importlib

    # Ray read its settings when it was imported: they are re-read after the change.
    raylet = importlib.import_module("ray._raylet")
    config, loader = (
        getattr(raylet, "Config", None),
        getattr(raylet, "AuthenticationTokenLoader", None),
    )
    if config is None or loader is None:  # another Ray: its own default applies
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    config.initialize("")
    loader.instance().reset_cache()


def _models(group: Sequence[TrainingTask]) -> str:
    keys = ", ".join(task.key[:12] for task in group)
    return f"reference model{'s' if len(group) > 1 else ''} {keys}"


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
