"""The command line: owns I/O, progress output and exit codes; the core does the work.

Exit codes: 0 pass, 1 a gate condition failed, 2 invalid policy, inputs or command line,
3 the audit could not complete. Heavy libraries (torch, onnxruntime, scikit-learn) are imported
only inside commands, so `mia-audit --help` is fast.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mia_audit._version import __version__
from mia_audit.errors import EXIT_INCOMPLETE, EXIT_PASS, MiaAuditError
from mia_audit.reports.text import printable

if TYPE_CHECKING:
    from mia_audit.policy.schema import Policy
    from mia_audit.result import Result

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Membership-inference privacy gate for image classifiers.",
)


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    gpu = "gpu"  # what people call cuda

    @property
    def runtime(self) -> str:
        """The `runtime.device` value it stands for."""
        return "cuda" if self is Device.gpu else self.value


class SchemaKind(str, Enum):
    policy = "policy"
    result = "result"


Verbose = Annotated[
    bool,
    typer.Option(
        "--verbose", "-v", help="Show tracebacks of errors, and a progress line for every stage."
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output; verdict only.")]
DeviceOption = Annotated[
    Device | None,
    typer.Option(help="Overrides runtime.device (gpu is cuda).", case_sensitive=False),
]
ExecutorOption = Annotated[
    str | None,
    typer.Option(
        "--executor",
        metavar="KIND|MAPPING",
        help="Overrides runtime.executor: local, ray, or a JSON/YAML mapping such as "
        "'{kind: ray, address: auto}'.",
    ),
]
FloorFileOption = Annotated[
    Path | None,
    typer.Option(
        "--floor",
        metavar="FILE",
        help="A floor policy (docs/floor.md) kept where the pull request cannot change it: "
        "refuse (exit 2) a policy weaker than it in any way.",
    ),
]
FloorMaxAucOption = Annotated[
    float | None,
    typer.Option(
        "--floor-max-auc",
        help="Refuse (exit 2) a policy without a gate.max_auc at most this, for every attack "
        "(a floor with this gate; tightens --floor's).",
    ),
]
FloorTprOption = Annotated[
    list[str] | None,
    typer.Option(
        "--floor-max-tpr-at-fpr",
        metavar="FPR:MAX",
        help="Refuse (exit 2) a policy without a TPR-at-FPR condition at most MAX at FPR "
        "(repeatable; a floor with this gate).",
    ),
]
#: The built-in formats, for --help (plugins add theirs; the list is read without loading them).
FORMATS_HELP = "json, html, markdown, junit, sarif, or a plugin's"


def formats_option(what: str, default: str) -> Any:
    """The repeatable `--format`/`-f` option; its help names `what` a format is, the formats,
    and the `default` when none is given."""
    return typer.Option(
        "--format",
        "-f",
        metavar="FORMAT",
        help=f"{what} ({FORMATS_HELP}; repeatable); {default}",
    )


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mia-audit {__version__}")
        raise typer.Exit(EXIT_PASS)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Run membership-inference attacks against a model and gate its release on the result."""


class _Terminated(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C so temporary files are cleaned up.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` on the way (a cache
    treating an unreadable file as missing, a wrapper around user code) swallows it.
    """


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


@dataclass
class _Progress:
    """How far a command got, for the message when it is interrupted."""

    reports_written: bool = False

    def mark_reports_written(self) -> None:
        """Called with SIGINT/SIGTERM held back, before one that arrived meanwhile lands."""
        self.reports_written = True

    def interrupted_message(self) -> str:
        if self.reports_written:
            return "interrupted: the reports were already written in full; caches are consistent"
        return "interrupted: no report was written; caches are consistent"


@contextlib.contextmanager
def _guard(verbose: bool) -> Iterator[_Progress]:
    """Turn the tool's errors into one line on stderr and the documented exit code."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    progress = _Progress()
    try:
        yield progress
    except MiaAuditError as error:
        _fail_all([problem.strip() for problem in error.problems], error.exit_code, verbose)
    except (KeyboardInterrupt, _Terminated):
        _fail(progress.interrupted_message(), EXIT_INCOMPLETE, verbose)
    except typer.Exit:
        raise
    except Exception as error:  # a bug or an unexpected library failure: still one line
        lines = str(error).strip().splitlines()
        message = f"internal error: {type(error).__name__}: {lines[0] if lines else ''}"
        hint = "" if verbose else " (run with -v for the traceback)"
        _fail(message + hint, EXIT_INCOMPLETE, verbose)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fail_all(messages: list[str], code: int, verbose: bool) -> None:
    """One `error:` line per problem (a policy with several mistakes lists each)."""
    for message in messages[:-1]:
        typer.echo(f"error: {printable(message or 'error')}", err=True)
    _fail(messages[-1] if messages else "", code, verbose)


def _fail(message: str, code: int, verbose: bool) -> None:
    """One line on stderr. The tool's messages name files and keys from the policy, which may
    hold line breaks: they are escaped, never cut (the advice comes last)."""
    if verbose:
        for line in traceback.format_exc().splitlines():
            print(printable(line), file=sys.stderr)
    typer.echo(f"error: {printable(message or 'error')}", err=True)
    raise typer.Exit(code)


@app.command()
def run(
    policy: Annotated[Path, typer.Argument(help="The policy YAML file.")],
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-o", help="Overrides outputs.dir.")
    ] = None,
    device: DeviceOption = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Overrides runtime.seed.")] = None,
    formats: Annotated[
        list[str] | None, formats_option("Report format", "overrides outputs.formats.")
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            help="A previous result.json for the *_increase conditions; overrides gate.baseline."
        ),
    ] = None,
    floor_file: FloorFileOption = None,
    floor_max_auc: FloorMaxAucOption = None,
    floor_max_tpr_at_fpr: FloorTprOption = None,
    executor: ExecutorOption = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Run the audit the policy describes; exit 0 (pass), 1 (fail), 2 (invalid), 3 (error)."""
    with _guard(verbose) as done:
        from mia_audit.api import run_loaded
        from mia_audit.reports.terminal import summary_text, verdict_line

        floor = _workflow_floor(floor_file, floor_max_auc, floor_max_tpr_at_fpr)
        loaded = _load_under_floor(
            floor, policy, output_dir, device, seed, formats, baseline=baseline, executor=executor
        )
        mlflow_output = loaded.policy.outputs.mlflow
        _check_mlflow_output(loaded.policy)
        out_dir = loaded.policy.outputs.dir
        created = not out_dir.exists()
        _check_writable(out_dir)
        from mia_audit.cli.console import ConsoleProgress

        progress = ConsoleProgress(quiet=quiet, verbose=verbose)
        progress.say(_run_banner(loaded, policy))
        try:
            result = run_loaded(loaded, progress, floor=floor).result
        except BaseException:
            if created:  # a refused run leaves no trace, not even an empty report folder
                _remove_if_empty(out_dir)
            raise
        finally:
            progress.close()
        if floor is not None:
            result.notes.append(_floor_note(floor, floor_max_auc, floor_max_tpr_at_fpr))
        written = _write_reports(result, loaded.policy, on_complete=done.mark_reports_written)
        typer.echo(verdict_line(result) if quiet else summary_text(result, written))
        if mlflow_output is not None:
            _log_to_mlflow(result, written, loaded.policy, quiet)
        raise typer.Exit(result.exit_code)


def _check_mlflow_output(policy: Any) -> None:
    """Before the audit: outputs.mlflow without the extra, a server or a version is exit 2."""
    if policy.outputs.mlflow is not None:
        from mia_audit.tracking.mlflow_log import check_mlflow_output

        check_mlflow_output(policy.outputs.mlflow, policy.model)


def _log_to_mlflow(result: Any, written: list[Path], policy: Any, quiet: bool) -> None:
    """outputs.mlflow, after the reports are written; a lost log can change the exit code."""
    from mia_audit.tracking.mlflow_log import record

    logged = record(result, written, policy.outputs.mlflow, policy.model)
    if logged.failed:
        typer.echo(f"error: {printable(logged.line)}", err=True)
    elif not quiet:
        typer.echo(printable(logged.line))
    raise typer.Exit(logged.exit_code)


def _workflow_floor(path: Path | None, max_auc: float | None, tpr: list[str] | None) -> Any:
    """The floor of `--floor FILE`, tightened by the `--floor-max-*` shorthands (or built
    from them alone); None without any."""
    from mia_audit.policy.floor import parse_floor
    from mia_audit.policy.floor_file import load_floor, with_gate_options

    options = parse_floor(max_auc, tpr or [])
    return with_gate_options(load_floor(path) if path else None, options)


def _load_under_floor(floor: Any, path: Path, *overrides: Any, **named: Any) -> Any:
    """The policy with the command line's overrides, refused (exit 2) where it is looser than
    the floor: run, validate and plan hold a policy to the same floor."""
    from mia_audit.policy.floor_rules import check_against_floor

    loaded = _load_with_overrides(path, *overrides, **named)
    check_against_floor(loaded.policy, floor)
    return loaded


def _floor_line(floor: Any, max_auc: float | None, tpr: list[str] | None) -> str:
    """A line saying which floor the policy met (empty without a floor)."""
    if floor is None:
        return ""
    return "\n" + printable(f"floor: {_floor_note(floor, max_auc, tpr)}")


def _floor_note(floor: Any, max_auc: float | None, tpr: list[str] | None) -> str:
    from mia_audit.policy.floor import parse_floor

    options = parse_floor(max_auc, tpr or [])
    if options and floor.path is None:
        return (
            f"gate floor from the command line: {options.describe()}; the policy's gate is "
            "at least as strict"
        )
    return f"{floor.source}, sha256 {floor.sha256[:12]}: the policy is at least as strict"


def _write_reports(
    result: Result, policy: Policy, on_complete: Callable[[], None] | None = None
) -> list[Path]:
    """The policy's report formats, rendered in full, then written into outputs.dir as a set."""
    from mia_audit.reports import render_reports, write_reports

    rendered = render_reports(result, policy.outputs.formats)
    return write_reports(rendered, policy.outputs.dir, on_complete=on_complete)


def _load_with_overrides(
    path: Path,
    output_dir: Path | None,
    device: Device | None,
    seed: int | None,
    formats: list[str] | None,
    baseline: Path | None = None,
    executor: str | None = None,
) -> Any:
    from mia_audit.policy.loading import load_policy, with_overrides

    loaded = load_policy(path)
    loaded.policy = with_overrides(
        loaded.policy,
        output_dir=output_dir.resolve() if output_dir else None,
        device=device.runtime if device else None,
        seed=seed,
        formats=tuple(formats) if formats else None,
        baseline=baseline.resolve() if baseline else None,
        executor=executor,
    )
    return loaded


def _run_banner(loaded: Any, path: Path) -> str:
    """The first progress line of a run: what it audits, where, and where it caches."""
    runtime = loaded.policy.runtime
    return (
        f"mia-audit {__version__}: {path} ({loaded.policy.name}), device {runtime.device}, "
        f"cache {runtime.cache_dir}"
    )


def _check_writable(directory: Path) -> None:
    """Fail before the audit runs, not after, when the report cannot be written."""
    from mia_audit.errors import InputError

    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise InputError(
            f"outputs.dir: {directory}: cannot write there ({error.strerror}); "
            "choose a writable folder with --output-dir"
        ) from None


def _check_writable_without_creating(directory: Path) -> None:
    """`_check_writable` for validate, which leaves no folder behind: the folder, or the
    nearest one above it that exists, must take a new file."""
    existing = directory
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing == directory or not existing.is_dir():
        _check_writable(directory)  # an existing folder (or a file in the way: its error)
        return
    if not os.access(existing, os.W_OK | os.X_OK):
        _check_writable(directory)  # raises with the system's reason


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):
        directory.rmdir()


#: What `render` writes when no --format is given (result.json is its input, not an output).
RENDER_DEFAULT_FORMATS = ("html", "markdown", "junit")


@app.command()
def render(
    result_json: Annotated[Path, typer.Argument(help="A result.json written by `mia-audit run`.")],
    formats: Annotated[
        list[str] | None, formats_option("Format to write", "default html, markdown, junit.")
    ] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option("--output-dir", "-o", help="Where to write (default: RESULT_JSON's folder)."),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Re-render reports from a result.json without re-running attacks (exit 0, or 2 if invalid)."""
    with _guard(verbose):
        from mia_audit.reports import render_reports, write_reports

        names = _render_formats(formats or list(RENDER_DEFAULT_FORMATS))
        result = _load_result(result_json)
        out_dir = (output_dir or result_json.parent).resolve()
        _check_writable(out_dir)
        written = write_reports(render_reports(result, names), out_dir, replace=False)
        listing = ", ".join(str(p) for p in written)
        typer.echo(printable(f"rendered from {result_json}: {listing}"))


def _render_formats(names: list[str]) -> list[str]:
    from mia_audit.errors import InputError
    from mia_audit.reports import format_names

    available = sorted(format_names())
    for name in names:
        if name not in available:
            raise InputError(
                f"--format: unknown format {name!r}; available: {', '.join(available)}"
            )
    return list(dict.fromkeys(names))


def _load_result(path: Path) -> Any:
    """Parse a result.json; any problem is one line naming the file (exit 2)."""
    import json

    from pydantic import ValidationError

    from mia_audit.errors import InputError
    from mia_audit.result import SCHEMA_VERSION, Result

    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise InputError(
            f"{path}: no such file; give the result.json `mia-audit run` wrote"
        ) from None
    except OSError as error:
        raise InputError(f"{path}: cannot read it ({error.strerror})") from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        kind = _file_kind(path)
        if kind is not None:
            raise InputError(f"{path}: {kind}, not a result.json; {_RENDER_ADVICE}") from None
        raise InputError(f"{path}: not valid JSON ({error}); {_RENDER_ADVICE}") from None
    version = document.get("schema_version") if isinstance(document, dict) else None
    if isinstance(version, int) and version != SCHEMA_VERSION:
        raise InputError(
            f"{path}: result schema version {version}, but this mia-audit reads version "
            f"{SCHEMA_VERSION}; render it with the mia-audit that wrote it, or re-run the audit"
        )
    try:
        result = Result.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "top level"
        raise InputError(
            f"{path}: not a mia-audit result.json ({where}: {first['msg']}"
            f"{_more(error.error_count() - 1)})"
        ) from None
    _check_intact(path, document, result)
    return result


def _check_intact(path: Path, document: dict[str, Any], result: Any) -> None:
    """A result that contradicts itself, or whose content no longer matches the sha256 `run`
    recorded, is refused: render must never turn an edited FAIL into a PASS report."""
    from mia_audit.errors import InputError
    from mia_audit.gate.consistency import contradictions
    from mia_audit.result import content_sha256

    problems = contradictions(result)
    if problems:
        raise InputError(
            f"{path}: {problems[0]}; the result contradicts itself (edited after `mia-audit "
            f"run` wrote it?): re-run the audit{_more(len(problems) - 1)}"
        )
    recorded = document.get("sha256")
    if recorded is None:
        raise InputError(
            f"{path}: sha256: missing, so its content cannot be checked; render the result.json "
            "that `mia-audit run` wrote, or re-run the audit"
        )
    if recorded != content_sha256(document):
        raise InputError(
            f"{path}: sha256: does not match the file's content (edited after `mia-audit run` "
            "wrote it?); render the result.json as run wrote it, or re-run the audit"
        )


_RENDER_ADVICE = (
    "give the result.json that `mia-audit run` wrote in outputs.dir (run the policy first)"
)

#: What a file that is not a result.json probably is, by its suffix.
_FILE_KINDS = {
    ".yaml": "a YAML file (a policy?)",
    ".yml": "a YAML file (a policy?)",
    ".html": "an HTML report",
    ".htm": "an HTML report",
    ".md": "a Markdown summary",
    ".xml": "an XML file (a JUnit report?)",
    ".npz": "a NumPy data archive",
    ".npy": "a NumPy array",
    ".onnx": "an ONNX model",
    ".pt": "a PyTorch file",
    ".pth": "a PyTorch file",
}


def _file_kind(path: Path) -> str | None:
    """What the file is when it is not JSON: a policy (by its keys), else by its suffix."""
    if path.suffix.lower() in (".yaml", ".yml", ""):
        try:
            import yaml

            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, yaml.YAMLError):
            document = None
        if isinstance(document, dict) and {"version", "attacks"} <= set(document):
            return "a mia-audit policy"
    return _FILE_KINDS.get(path.suffix.lower())


def _more(count: int) -> str:
    return "" if count <= 0 else f"; and {count} more problem{'s' if count > 1 else ''}"


@app.command()
def validate(
    policy: Annotated[Path, typer.Argument(help="The policy YAML file.")],
    baseline: Annotated[
        Path | None,
        typer.Option(help="A previous result.json for the *_increase conditions, as for run."),
    ] = None,
    floor_file: FloorFileOption = None,
    floor_max_auc: FloorMaxAucOption = None,
    floor_max_tpr_at_fpr: FloorTprOption = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Check that `run` will not reject the policy: keys, files, the model (format,
    architecture, classes, input size) and the data, without scoring anything (exit 0 or 2)."""
    with _guard(verbose):
        from mia_audit.cli.console import ConsoleProgress
        from mia_audit.pipeline.preflight import check_before_scoring
        from mia_audit.pipeline.prepare import prepare_run
        from mia_audit.pipeline.run import inputs_from_policy
        from mia_audit.policy.loading import check_paths_exist

        floor = _workflow_floor(floor_file, floor_max_auc, floor_max_tpr_at_fpr)
        loaded = _load_under_floor(floor, policy, None, None, None, None, baseline=baseline)
        check_paths_exist(loaded.policy)
        _check_mlflow_output(loaded.policy)
        _check_writable_without_creating(loaded.policy.outputs.dir)
        progress = ConsoleProgress(quiet=quiet, verbose=verbose)
        try:
            inputs = inputs_from_policy(loaded, floor)
            # probes on the CPU, unless runtime.max_minutes needs run's estimate on its device
            estimate = loaded.policy.runtime.max_minutes is not None
            prepared = prepare_run(inputs, progress, device=None if estimate else "cpu")
            check_before_scoring(inputs, prepared, progress)
        finally:
            progress.close()
        typer.echo(
            _validated_text(prepared)
            + _floor_line(floor, floor_max_auc, floor_max_tpr_at_fpr)
        )


def _validated_text(prepared: Any) -> str:
    """What validate checked, in two lines."""
    from mia_audit.reports.text import plural

    p, audit_set, model = prepared.policy, prepared.data.audit_set, prepared.model
    shape = "x".join(str(n) for n in audit_set.images.shape[1:])
    first = (
        f"policy ok: {p.name} ({plural(len(p.attacks), 'attack')}, "
        f"{plural(_condition_count(p), 'gate condition')})"
    )
    second = (
        f"model: {model.format}, {plural(prepared.num_classes, 'class', 'classes')}; data: "
        f"{audit_set.n_members} members, {audit_set.n_non_members} non-members, images {shape}"
        + (f", baseline {prepared.baseline.info.path}" if prepared.baseline else "")
    )
    return printable(first) + "\n" + printable(second)


@app.command()
def plan(
    policy: Annotated[Path, typer.Argument(help="The policy YAML file.")],
    device: DeviceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    floor_file: FloorFileOption = None,
    floor_max_auc: FloorMaxAucOption = None,
    floor_max_tpr_at_fpr: FloorTprOption = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Say what `run` will do and estimate how long it takes, from a short measured probe
    (a few training steps, one inference batch); trains nothing (exit 0 or 2). Under a floor
    it first refuses what `run` would refuse under it."""
    import json

    with _guard(verbose):
        from mia_audit.cli.console import ConsoleProgress
        from mia_audit.cli.plan_text import plan_text
        from mia_audit.pipeline.plan import plan_run
        from mia_audit.pipeline.preflight import check_dp_recipe
        from mia_audit.pipeline.prepare import prepare_run
        from mia_audit.pipeline.run import inputs_from_policy

        floor = _workflow_floor(floor_file, floor_max_auc, floor_max_tpr_at_fpr)
        loaded = _load_under_floor(floor, policy, None, device, None, None)
        progress = ConsoleProgress(quiet=quiet, verbose=verbose)
        try:
            inputs = inputs_from_policy(loaded, floor)
            prepared = prepare_run(inputs, progress)
            check_dp_recipe(prepared)  # a DP recipe run refuses is no plan
            planned = plan_run(prepared)
        finally:
            progress.close()
        if as_json:
            typer.echo(json.dumps(planned.to_dict(), indent=2))
        else:
            typer.echo(
                plan_text(planned, policy) + _floor_line(floor, floor_max_auc, floor_max_tpr_at_fpr)
            )


@app.command()
def init(
    model: Annotated[Path, typer.Option(help="The model file (.onnx, TorchScript, state dict).")],
    members: Annotated[Path, typer.Option(help="The samples the model was trained on.")],
    non_members: Annotated[
        Path, typer.Option("--non-members", help="Held-out samples of the same distribution.")
    ],
    population: Annotated[
        Path | None, typer.Option(help="More held-out data for reference models (optional).")
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the policy.")
    ] = Path("policy.yaml"),
    force: Annotated[bool, typer.Option(help="Overwrite an existing policy file.")] = False,
    verbose: Verbose = False,
) -> None:
    """Write a commented starter policy for a model and its data (detected format, classes,
    image size, architecture and preprocessing; thresholds to review)."""
    with _guard(verbose):
        from mia_audit.errors import InputError
        from mia_audit.policy.starter import SCHEMA_FILE, StarterInputs, starter_policy
        from mia_audit.store.atomic import atomic_write_text

        if output.exists() and not force:
            raise InputError(f"--output: {output}: exists; choose another file or give --force")
        text = starter_policy(
            StarterInputs(
                policy=output.resolve(),
                model=model.resolve(),
                members=members.resolve(),
                non_members=non_members.resolve(),
                population=population.resolve() if population else None,
            )
        )
        atomic_write_text(output, text)
        schema_file = output.parent / SCHEMA_FILE
        if not schema_file.exists():  # the starter's first line points editors at it
            import json

            from mia_audit.policy.loading import policy_json_schema

            schema_text = json.dumps(policy_json_schema(), indent=2, sort_keys=True)
            atomic_write_text(schema_file, schema_text + "\n")
        typer.echo(
            printable(
                f"wrote {output}: review the lines marked REVIEW, then `mia-audit plan "
                f"{output}` and `mia-audit run {output}`"
            )
        )


def _condition_count(policy: Any) -> int:
    return len(policy.gate.limits())


@app.command()
def schema(
    kind: Annotated[SchemaKind, typer.Argument(help="policy or result.")] = SchemaKind.policy,
    verbose: Verbose = False,
) -> None:
    """Print the JSON Schema of the policy file (or of result.json)."""
    import json

    with _guard(verbose):
        if kind is SchemaKind.policy:
            from mia_audit.policy.loading import policy_json_schema

            document = policy_json_schema()
        else:
            from mia_audit.result import result_json_schema

            document = result_json_schema()
        typer.echo(json.dumps(document, indent=2, sort_keys=True))


@app.command()
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Folder for the demo's model, data, policy, report.")
    ] = Path("mia-demo"),
    epochs: Annotated[int, typer.Option(min=1, help="Target training epochs.")] = 6,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Train an overfit ResNet18 on scikit-learn's digits and audit it (exit 0 when done)."""
    with _guard(verbose):
        from mia_audit.api import run_loaded
        from mia_audit.cli.console import ConsoleProgress
        from mia_audit.demo import DemoOptions, prepare_demo
        from mia_audit.policy.loading import load_policy
        from mia_audit.reports.terminal import summary_text

        progress = ConsoleProgress(quiet=quiet)
        policy_path, trained = prepare_demo(
            DemoOptions(directory=directory.resolve(), epochs=epochs), progress.stage
        )
        if not trained:
            progress.note(f"reusing the trained demo target in {directory}")
        loaded = load_policy(policy_path)
        result = run_loaded(loaded, progress).result
        written = _write_reports(result, loaded.policy)
        typer.echo(summary_text(result, written))
        typer.echo(printable(f"mia-audit run {policy_path} would exit {result.exit_code}"))
        raise typer.Exit(EXIT_PASS)


def main() -> None:
    """Console-script entry point (usage errors exit 2, like every invalid input)."""
    _keep_home_clean()
    app()


def _keep_home_clean() -> None:
    """Nothing is written under the user's home, and nothing is sent anywhere.

    onnxruntime otherwise keeps a telemetry device id and event store in
    ~/.cache/Microsoft/DeveloperTools (and may upload events); matplotlib caches its font list
    in ~/.cache/matplotlib. Both read these variables when first imported, which happens later,
    inside the commands. A matplotlib folder the user chose (MPLCONFIGDIR) is kept.
    """
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    if not os.environ.get("MPLCONFIGDIR"):
        folder = tempfile.mkdtemp(prefix="mia-audit-matplotlib-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        os.environ["MPLCONFIGDIR"] = folder
