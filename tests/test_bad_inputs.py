"""Broken policies, data and models: `mia-audit run` must fail cleanly.

Every case builds one broken variant of the digits target (real files written with numpy and torch,
no mocks), runs the installed console script and checks the contract of docs/troubleshooting.md and
docs/exit-codes.md: the documented exit code (2 for an invalid policy or input, 3 when the audit
cannot complete), exactly one line on stderr that starts with "error:" and names the offending field
or file, no traceback unless `-v` is given, and no report written.

To stay fast, the cases share one copy of the target (each case writes its policy, with
absolute paths to the shared files or to the broken files it made, into its own folder), and
the console script runs for all cases at once, a few at a time, before the tests assert.
"""

from __future__ import annotations

import copy
import shutil
import struct
import subprocess
import warnings
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
import yaml

from tests.conftest import without_progress

RunCli = Callable[..., subprocess.CompletedProcess[str]]

EXIT_PASS = 0
EXIT_GATE_FAILED = 1
EXIT_INVALID = 2
EXIT_INCOMPLETE = 3


@dataclass(frozen=True)
class Base:
    """The shared copy of the target, and a real report from one good run."""

    directory: Path
    document: dict[str, Any]
    previous_report: Path

    def path(self, name: str) -> Path:
        return self.directory / name


@pytest.fixture(scope="module")
def base(digits_target: Any, tmp_path_factory: pytest.TempPathFactory, run_cli: RunCli) -> Base:
    directory = digits_target.copy_to(tmp_path_factory.mktemp("bad-inputs") / "target")
    document = yaml.safe_load((directory / "policy.yaml").read_text(encoding="utf-8"))
    # One cheap attack: cases that get as far as the attacks must not spend time there.
    document["attacks"] = ["loss"]
    # A gate every run can evaluate: a TPR-at-FPR condition may need more samples than the
    # target has, which would be an (unrelated) invalid-input error of its own.
    document["gate"] = {"max_auc": 0.6}
    document["outputs"]["dir"] = "report"
    policy = directory / "good.yaml"
    policy.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    # A real, complete run: proves the unbroken inputs are fine (whatever the verdict) and
    # leaves a real report for the case that checks a failed run keeps it.
    completed = run_cli("run", policy, "-q")
    assert completed.returncode in (EXIT_PASS, EXIT_GATE_FAILED), completed.stderr
    assert (directory / "report" / "result.json").is_file()
    return Base(directory, document, directory / "report")


@dataclass
class Case:
    """One broken variant: where it lives, and what it writes."""

    base: Base
    directory: Path
    document: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        # Absolute paths to the shared files; the policy, cache and report are the case's own.
        document = copy.deepcopy(self.base.document)
        model, data = document["model"], document["data"]
        model["path"] = str(self.base.path(model["path"]))
        for key in ("members", "non_members", "population"):
            data[key] = str(self.base.path(data[key]))
        document["outputs"]["dir"] = str(self.out_dir)
        self.document = document

    @property
    def out_dir(self) -> Path:
        return self.directory / "report"

    @property
    def policy(self) -> Path:
        return self.directory / "policy.yaml"

    def write_policy(self) -> Path:
        self.policy.write_text(yaml.safe_dump(self.document, sort_keys=False), encoding="utf-8")
        return self.policy

    def load_npz(self, name: str) -> dict[str, np.ndarray]:
        with np.load(self.base.path(name)) as archive:
            return {key: archive[key] for key in archive.files}

    def save_npz(self, name: str, **arrays: Any) -> Path:
        path = self.directory / name
        with path.open("wb") as handle:
            np.savez(handle, **arrays)
        return path


@dataclass(frozen=True)
class Expected:
    exit_code: int
    #: Substrings the one error line must contain (field names, file names, advice).
    mentions: tuple[str, ...]
    #: Extra command-line arguments for `mia-audit run` (e.g. a gate floor).
    args: tuple[str, ...] = ()


Builder = Callable[[Case], Expected]


# --- policy ----------------------------------------------------------------------------------


def broken_yaml(case: Case) -> Expected:
    case.write_policy()
    lines = case.policy.read_text(encoding="utf-8").splitlines()
    at = lines.index("model:") + 2  # inside the model mapping
    lines.insert(at, "  num_classes: [10, 11")  # an unclosed flow sequence
    case.policy.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # PyYAML reports where it noticed the problem: the line after the unclosed bracket.
    return Expected(EXIT_INVALID, ("policy.yaml", f"line {at + 2}", "invalid YAML"))


def misspelt_key(document: dict[str, Any]) -> None:
    document["model"]["num_clases"] = document["model"].pop("num_classes")


def seed_not_a_number(document: dict[str, Any]) -> None:
    document["runtime"]["seed"] = "abc"


def odd_online_lira(document: dict[str, Any]) -> None:
    # Online LiRA needs an even number of models; rejected before any model is trained.
    document["attacks"] = ["loss", {"name": "lira", "reference_models": 3, "mode": "online"}]


def misspelt_recipe_key(document: dict[str, Any]) -> None:
    document["reference_training"] = {"epoch": 20, "batch_size": 256}


#: The cases whose policy itself is wrong (not a file it names): the committed JSON Schema
#: must refuse each of them too (tests/test_schema.py applies them to the example policies).
POLICY_MISTAKES: dict[str, Callable[[dict[str, Any]], None]] = {
    "unknown-key": misspelt_key,
    "wrong-type": seed_not_a_number,
    "lira-invalid": odd_online_lira,
    "reference-training-typo": misspelt_recipe_key,
}


def unknown_key(case: Case) -> Expected:
    misspelt_key(case.document)
    case.write_policy()
    return Expected(EXIT_INVALID, ("model.num_clases", "did you mean 'num_classes'"))


def wrong_type(case: Case) -> Expected:
    seed_not_a_number(case.document)
    case.write_policy()
    return Expected(EXIT_INVALID, ("policy.yaml", "runtime.seed", "integer"))


def lira_attack(case: Case) -> Expected:
    """A broken lira entry is refused before any model is trained."""
    odd_online_lira(case.document)
    case.write_policy()
    return Expected(EXIT_INVALID, ("attacks[1]", "even number"))


def reference_training_key(case: Case) -> Expected:
    """A typo in `reference_training` is refused with what was meant."""
    misspelt_recipe_key(case.document)
    case.write_policy()
    return Expected(EXIT_INVALID, ("reference_training.epoch", "did you mean 'epochs'"))


def unwritable_output_dir(case: Case) -> Expected:
    blocker = case.directory / "not-a-folder"
    blocker.write_text("a regular file\n", encoding="utf-8")
    case.document["outputs"]["dir"] = str(blocker / "report")
    case.write_policy()
    return Expected(EXIT_INVALID, ("outputs.dir", "not-a-folder", "--output-dir"))


# --- model -----------------------------------------------------------------------------------


def missing_model(case: Case) -> Expected:
    case.document["model"]["path"] = "no-such-model.onnx"  # relative to the policy's folder
    case.write_policy()
    return Expected(EXIT_INVALID, ("model.path", "no-such-model.onnx", "not found"))


def model_is_directory(case: Case) -> Expected:
    (case.directory / "model.onnx").mkdir()
    case.document["model"]["path"] = "model.onnx"
    case.write_policy()
    return Expected(EXIT_INVALID, ("model.path", "model.onnx", "directory"))


def truncated_onnx(case: Case) -> Expected:
    content = case.base.path("target.onnx").read_bytes()
    (case.directory / "cut.onnx").write_bytes(content[: len(content) // 3])
    case.document["model"]["path"] = "cut.onnx"
    case.write_policy()
    return Expected(EXIT_INVALID, ("model.path", "cut.onnx", "not a valid ONNX model", "again"))


def truncated_state_dict(case: Case) -> Expected:
    content = case.base.path("target.pt").read_bytes()
    (case.directory / "cut.pt").write_bytes(content[: len(content) // 3])
    case.document["model"]["path"] = "cut.pt"
    case.write_policy()
    return Expected(EXIT_INVALID, ("model.path", "cut.pt", "torch.save"))


def corrupt_torchscript(case: Case) -> Expected:
    """A zip that looks like TorchScript (it has code/) but is not one."""
    with zipfile.ZipFile(case.directory / "scripted.pt", "w") as archive:
        archive.writestr("scripted/code/__torch__.py", "not really code\n")
        archive.writestr("scripted/constants.pkl", b"garbage")
    case.document["model"]["path"] = "scripted.pt"
    case.write_policy()
    return Expected(EXIT_INVALID, ("model.path", "scripted.pt", "TorchScript"))


def state_dict_with_7_classes(case: Case) -> Expected:
    model = torchvision.models.resnet18(weights=None, num_classes=7)
    torch.save(model.state_dict(), case.directory / "seven.pt")
    case.document["model"]["path"] = "seven.pt"  # the policy still says num_classes: 10
    case.write_policy()
    return Expected(EXIT_INVALID, ("model.num_classes", "seven.pt", "7 outputs"))


def num_classes_7_for_10_logits(case: Case) -> Expected:
    case.document["model"]["num_classes"] = 7  # target.onnx has 10 outputs
    case.write_policy()
    return Expected(EXIT_INVALID, ("model.num_classes", "is 7", "target.onnx", "10 logits"))


def pickled_model(case: Case) -> Expected:
    torch.save(torch.nn.Linear(3, 10), case.directory / "whole-module.pt")
    case.document["model"]["path"] = "whole-module.pt"
    case.write_policy()
    return Expected(EXIT_INVALID, ("whole-module.pt", "model.allow_pickle"))


class NanHead(torch.nn.Module):
    """A well-formed (N, 3, H, W) -> (N, 10) model whose logits are all NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(3, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) @ self.weight * float("nan")


def nan_logits(case: Case) -> Expected:
    with warnings.catch_warnings():  # torch >= 2.9: "TorchScript is deprecated"
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(NanHead()), str(case.directory / "nan.pt"))
    case.document["model"]["path"] = "nan.pt"
    case.write_policy()
    return Expected(EXIT_INCOMPLETE, ("model.path", "nan.pt", "NaN"))


# --- data ------------------------------------------------------------------------------------


def missing_data(case: Case) -> Expected:
    case.document["data"]["non_members"] = "no-such-data.npz"
    case.write_policy()
    return Expected(EXIT_INVALID, ("data.non_members", "no-such-data.npz", "not found"))


def label_out_of_range(case: Case) -> Expected:
    arrays = case.load_npz("members.npz")
    arrays["y"][7] = 42
    case.document["data"]["members"] = str(case.save_npz("members-42.npz", **arrays))
    case.write_policy()
    return Expected(EXIT_INVALID, ("data.members", "members-42.npz", "42"))


def label_out_of_range_no_class_names(case: Case) -> Expected:
    """Without data.class_names the check against the model's outputs must catch it."""
    arrays = case.load_npz("non_members.npz")
    arrays["y"][3] = 42
    case.document["data"]["non_members"] = str(case.save_npz("non-members-42.npz", **arrays))
    del case.document["data"]["class_names"]
    case.write_policy()
    return Expected(EXIT_INVALID, ("data.non_members", "non-members-42.npz", "42", "10 outputs"))


def empty_data(case: Case) -> Expected:
    arrays = case.load_npz("members.npz")
    empty = {key: value[:0] for key, value in arrays.items()}
    case.document["data"]["members"] = str(case.save_npz("empty.npz", **empty))
    case.write_policy()
    return Expected(EXIT_INVALID, ("data.members", "empty.npz", "no samples"))


def npz_with_object_array(case: Case) -> Expected:
    arrays = case.load_npz("non_members.npz")
    images = np.empty(len(arrays["x"]), dtype=object)
    images[:] = list(arrays["x"])
    case.document["data"]["non_members"] = str(
        case.save_npz("objects.npz", x=images, y=arrays["y"], ids=arrays["ids"])
    )
    case.write_policy()
    return Expected(EXIT_INVALID, ("data.non_members", "objects.npz", "data.allow_pickle"))


class Pickled:
    """A custom class: unpickling it would import and run code from this module."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.imgs = images
        self.labels = labels


def torch_pickled_object(case: Case) -> Expected:
    arrays = case.load_npz("members.npz")
    torch.save(Pickled(arrays["x"], arrays["y"]), case.directory / "dataset.pt")
    case.document["data"]["members"] = str(case.directory / "dataset.pt")
    case.write_policy()
    return Expected(EXIT_INVALID, ("data.members", "dataset.pt", "data.allow_pickle"))


def different_image_shapes(case: Case) -> Expected:
    arrays = case.load_npz("non_members.npz")
    arrays["x"] = np.ascontiguousarray(arrays["x"][:, :28, :28, :])
    case.document["data"]["non_members"] = str(case.save_npz("cropped.npz", **arrays))
    case.write_policy()
    return Expected(EXIT_INVALID, ("data.non_members", "cropped.npz", "(3, 28, 28)", "(3, 32, 32)"))


def members_of_another_shape(case: Case) -> Expected:
    """The members file is the odd one: named as such, not the non-members read after it."""
    arrays = case.load_npz("members.npz")
    arrays["x"] = np.ascontiguousarray(arrays["x"][:, :28, :28, :])
    case.document["data"]["members"] = str(case.save_npz("cropped.npz", **arrays))
    case.write_policy()  # target.onnx takes 3x32x32 only
    return Expected(
        EXIT_INVALID, ("data.members", "cropped.npz", "(3, 28, 28)", "model takes (3, 32, 32)")
    )


def members_of_another_shape_flexible_model(case: Case) -> Expected:
    """A ResNet state dict runs on both sizes: the shape the other files share decides."""
    members_of_another_shape(case)
    case.document["model"]["path"] = str(case.base.path("target.pt"))
    case.write_policy()
    return Expected(
        EXIT_INVALID,
        ("data.members", "cropped.npz", "(3, 28, 28)", "data.non_members", "data.population"),
    )


def data_is_not_data(case: Case) -> Expected:
    (case.directory / "members.npz").write_bytes(b"this is not a zip archive\n")
    case.document["data"]["members"] = "members.npz"
    case.write_policy()
    return Expected(EXIT_INVALID, ("data.members", "members.npz", "not a readable .npz"))


def png_bytes_of_zeros(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of width x height black pixels: a few KiB that decode to
    width x height bytes (Pillow converts to 8-bit), written row by row without holding the
    image in memory."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then the packed pixels
    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def image_folder_with(case: Case, name: str, content: bytes) -> Path:
    """members/0 holds a real digit, members/1 the given PNG."""
    from PIL import Image

    folder = case.directory / "members"
    (folder / "0").mkdir(parents=True)
    (folder / "1").mkdir()
    Image.fromarray(case.load_npz("members.npz")["x"][0]).save(folder / "0" / "digit.png")
    (folder / "1" / name).write_bytes(content)
    return folder


def png_decompression_bomb(case: Case) -> Expected:
    """20000 x 20000 pixels (over twice Pillow's MAX_IMAGE_PIXELS: its DecompressionBombError)."""
    folder = image_folder_with(case, "bomb.png", png_bytes_of_zeros(20_000, 20_000))
    case.document["data"]["members"] = str(folder)
    case.write_policy()
    return Expected(EXIT_INVALID, ("data.members", "bomb.png", "too large to decode"))


def png_over_pillow_limit(case: Case) -> Expected:
    """10000 x 10000 pixels: over MAX_IMAGE_PIXELS, under twice it (Pillow only warns)."""
    folder = image_folder_with(case, "huge.png", png_bytes_of_zeros(10_000, 10_000))
    case.document["data"]["members"] = str(folder)
    case.write_policy()
    return Expected(EXIT_INVALID, ("data.members", "huge.png", "too large to decode"))


def npz_larger_than_memory(case: Case) -> Expected:
    """x.npy's header says 10^9 images of 32x32x3 bytes (3.1 TB); its data stops after ten.
    Only a check of the header, before loading, can name that size."""
    arrays = case.load_npz("members.npz")
    path = case.directory / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("x.npy", "w") as handle:
            header = {"descr": "|u1", "fortran_order": False, "shape": (10**9, 32, 32, 3)}
            np.lib.format.write_array_header_1_0(handle, header)
            handle.write(arrays["x"][:10].tobytes())
        for key in ("y", "ids"):
            with archive.open(f"{key}.npy", "w") as handle:
                np.lib.format.write_array(handle, arrays[key])
    case.document["data"]["members"] = str(path)
    case.write_policy()
    return Expected(EXIT_INVALID, ("data.members", "huge.npz", "3.1 TB", "'x'", "available"))


def class_threshold_too_few_samples(case: Case) -> Expected:
    case.document["data"]["max_per_side"] = 4
    case.document["attacks"] = ["loss", "class_threshold"]  # 5 folds
    case.write_policy()
    return Expected(
        EXIT_INVALID, ("attacks[1]", "'class_threshold'", "at least 5 members", "has 4 and 4")
    )


def learned_too_few_samples(case: Case) -> Expected:
    """5 folds of 7 leave 5 per side to train on; early stopping needs 6."""
    case.document["data"]["max_per_side"] = 7
    case.document["attacks"] = ["loss", {"name": "learned", "model": "gradient_boosting"}]
    case.write_policy()
    return Expected(EXIT_INVALID, ("attacks[1]", "'learned'", "at least 8 members", "has 7 and 7"))


def onnx_with_external_data(case: Case) -> Path:
    import onnx

    model = onnx.load(str(case.base.path("target.onnx")))
    path = case.directory / "external.onnx"
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    case.document["model"]["path"] = str(path)
    case.write_policy()
    return case.directory / "weights.bin"


def onnx_external_data_missing(case: Case) -> Expected:
    onnx_with_external_data(case).unlink()
    return Expected(
        EXIT_INVALID, ("model.path", "external.onnx", "'weights.bin'", "missing", "next to")
    )


def onnx_external_data_truncated(case: Case) -> Expected:
    weights = onnx_with_external_data(case)
    weights.write_bytes(weights.read_bytes()[:1_000_000])
    return Expected(EXIT_INVALID, ("model.path", "'weights.bin'", "1000000 bytes", "truncated"))


# --- gate floor (from the workflow: `--floor-*` options) ----------------------------------------


def floor_looser_auc(case: Case) -> Expected:
    case.write_policy()  # gate.max_auc: 0.6
    return Expected(
        EXIT_INVALID,
        ("gate.max_auc", "max 0.6", "--floor-max-auc 0.55", "0.55 or lower"),
        args=("--floor-max-auc", "0.55"),
    )


def floor_missing_tpr(case: Case) -> Expected:
    case.write_policy()  # no TPR condition
    return Expected(
        EXIT_INVALID,
        ("gate.max_tpr_at_fpr", "missing", "'tpr_at_fpr@0.05'", "--floor-max-tpr-at-fpr 0.05:0.1"),
        args=("--floor-max-tpr-at-fpr", "0.05:0.1"),
    )


def floor_scoped_to_one_attack(case: Case) -> Expected:
    case.document["attacks"] = ["loss", "confidence"]
    case.document["gate"] = {"max_auc": {"max": 0.5, "attacks": ["loss"]}}
    case.write_policy()
    return Expected(
        EXIT_INVALID,
        ("gate.max_auc.attacks", "'confidence'", "every attack"),
        args=("--floor-max-auc", "0.6"),
    )


#: An unexpired waiver within the year a waiver may run.
WAIVER_EXPIRES = (datetime.now(timezone.utc).date() + timedelta(days=300)).isoformat()


def floor_waived_by_suppression(case: Case) -> Expected:
    case.document["gate"] = {
        "max_auc": 0.5,
        "suppressions": [{"condition": "auc", "reason": "trust me", "expires": WAIVER_EXPIRES}],
    }
    case.write_policy()
    return Expected(
        EXIT_INVALID,
        ("gate.suppressions[0]", "'auc'", "remove the suppression"),
        args=("--floor-max-auc", "0.6"),
    )


def floor_malformed(case: Case) -> Expected:
    case.write_policy()
    return Expected(
        EXIT_INVALID,
        ("--floor-max-tpr-at-fpr", "'0.05'", "FPR:MAX"),
        args=("--floor-max-tpr-at-fpr", "0.05"),
    )


CASES: dict[str, Builder] = {
    "broken-yaml": broken_yaml,
    "unknown-key": unknown_key,
    "wrong-type": wrong_type,
    "lira-invalid": lira_attack,
    "reference-training-typo": reference_training_key,
    "output-dir-below-a-file": unwritable_output_dir,
    "missing-model": missing_model,
    "model-is-a-directory": model_is_directory,
    "truncated-onnx": truncated_onnx,
    "truncated-state-dict": truncated_state_dict,
    "corrupt-torchscript": corrupt_torchscript,
    "state-dict-with-7-classes": state_dict_with_7_classes,
    "num-classes-7-for-10-logits": num_classes_7_for_10_logits,
    "pickled-model": pickled_model,
    "nan-logits": nan_logits,
    "missing-data": missing_data,
    "label-out-of-range": label_out_of_range,
    "label-out-of-range-no-class-names": label_out_of_range_no_class_names,
    "empty-data": empty_data,
    "npz-object-array": npz_with_object_array,
    "torch-pickled-object": torch_pickled_object,
    "different-image-shapes": different_image_shapes,
    "members-of-another-shape": members_of_another_shape,
    "members-of-another-shape-flexible-model": members_of_another_shape_flexible_model,
    "corrupt-npz": data_is_not_data,
    "png-decompression-bomb": png_decompression_bomb,
    "png-over-pillow-limit": png_over_pillow_limit,
    "npz-larger-than-memory": npz_larger_than_memory,
    "class-threshold-too-few-samples": class_threshold_too_few_samples,
    "learned-too-few-samples": learned_too_few_samples,
    "onnx-external-data-missing": onnx_external_data_missing,
    "onnx-external-data-truncated": onnx_external_data_truncated,
    "floor-looser-auc": floor_looser_auc,
    "floor-missing-tpr": floor_missing_tpr,
    "floor-scoped-to-one-attack": floor_scoped_to_one_attack,
    "floor-waived-by-suppression": floor_waived_by_suppression,
    "floor-malformed": floor_malformed,
}


def previous_report_then_nan(case: Case) -> Expected:
    """A late failure (the model ran) over the report of an earlier, complete run."""
    shutil.copytree(case.base.previous_report, case.out_dir)
    return nan_logits(case)


# --- running ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    case: Case
    expected: Expected
    #: The files in the output folder before the run (by relative path).
    before: dict[str, bytes]
    completed: subprocess.CompletedProcess[str]


#: Concurrent runs of the console script (each is mostly interpreter and library start-up).
PARALLEL_RUNS = 4
#: The runs beside the matrix: a previous report to keep, and one case under -v.
PREVIOUS_REPORT = "previous-report-kept"
VERBOSE = "verbose-traceback"
RUNS: dict[str, tuple[Builder, tuple[str, ...]]] = {
    **{name: (build, ()) for name, build in CASES.items()},
    PREVIOUS_REPORT: (previous_report_then_nan, ()),
    VERBOSE: (missing_data, ("-v",)),
}


@pytest.fixture(scope="module")
def outcomes(
    base: Base, tmp_path_factory: pytest.TempPathFactory, run_cli: RunCli
) -> dict[str, Outcome | BaseException]:
    """Build every case, then run the console script for all of them, PARALLEL_RUNS at a time.

    A case whose building fails is reported by its own test, not by all of them."""
    prepared: dict[str, tuple[Case, Expected, dict[str, bytes]] | BaseException] = {}
    for name, (build, _) in RUNS.items():
        case = Case(base, tmp_path_factory.mktemp(name))
        try:
            expected = build(case)
        except Exception as error:  # reported by the case's own test
            prepared[name] = error
            continue
        prepared[name] = (case, expected, files_under(case.out_dir))
    results: dict[str, Outcome | BaseException] = {}
    with ThreadPoolExecutor(max_workers=PARALLEL_RUNS) as pool:
        futures = {
            name: pool.submit(run_cli, "run", item[0].policy, *RUNS[name][1], *item[1].args)
            for name, item in prepared.items()
            if not isinstance(item, BaseException)
        }
        for name, item in prepared.items():
            if isinstance(item, BaseException):
                results[name] = item
            else:
                results[name] = Outcome(*item, completed=futures[name].result())
    return results


def outcome_of(outcomes: dict[str, Outcome | BaseException], name: str) -> Outcome:
    outcome = outcomes[name]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def assert_one_error_line(stderr: str, expected: Expected) -> str:
    """One `error:` line, the last; before it only timestamped progress lines."""
    assert "Traceback" not in stderr, stderr
    lines = without_progress(stderr)
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    assert stderr.splitlines()[-1] == lines[0], stderr
    line = lines[0]
    assert line.startswith("error: "), line
    for mention in expected.mentions:
        assert mention in line, f"{mention!r} not in {line!r}"
    return line


def files_under(directory: Path) -> dict[str, bytes]:
    """Every file below `directory` (temporary files included), by relative path."""
    if not directory.exists():
        return {}
    return {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if not path.is_dir()
    }


# --- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CASES)
def test_bad_input_fails_cleanly(name: str, outcomes: dict[str, Outcome | BaseException]) -> None:
    outcome = outcome_of(outcomes, name)
    completed = outcome.completed

    assert completed.returncode == outcome.expected.exit_code, completed.stderr
    assert_one_error_line(completed.stderr, outcome.expected)
    assert completed.stdout == ""
    assert files_under(outcome.case.out_dir) == {}


def test_failed_run_leaves_previous_report_untouched(
    outcomes: dict[str, Outcome | BaseException],
) -> None:
    outcome = outcome_of(outcomes, PREVIOUS_REPORT)
    completed = outcome.completed
    assert "result.json" in outcome.before

    assert completed.returncode == EXIT_INCOMPLETE, completed.stderr
    assert_one_error_line(completed.stderr, outcome.expected)
    # Byte for byte the previous run's report, and nothing else (no temporary files either).
    assert files_under(outcome.case.out_dir) == outcome.before


def test_verbose_prints_the_traceback(outcomes: dict[str, Outcome | BaseException]) -> None:
    outcome = outcome_of(outcomes, VERBOSE)
    completed = outcome.completed

    assert completed.returncode == outcome.expected.exit_code
    assert "Traceback (most recent call last)" in completed.stderr
    last = completed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), completed.stderr
    assert all(mention in last for mention in outcome.expected.mentions), last
    assert files_under(outcome.case.out_dir) == {}
