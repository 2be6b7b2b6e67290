"""Benchmark: ResNet18 inference throughput, torch eager vs onnxruntime (and GPU engines).

Run from the repository root:  python bench/inference.py [--images 4096] [--batch-size 512]
    [--repeats 3] [--threads N]

The model is torchvision's resnet18 (ImageNet stem, num_classes=10, random init with a fixed
seed) on 32x32 inputs. Every engine is driven through the classifiers `mia_audit` itself uses
for the target model (`TorchClassifier`, `OnnxClassifier`), so the figures include what the
tool pays per batch (numpy in, float32 logits out). Engines:

- torch eager on CPU (`TorchClassifier`, `torch.inference_mode`), `--threads` torch threads;
- onnxruntime CPU provider on the same model exported with `mia_audit.demo.export_onnx`: once
  with the tool's session options plus `--threads` intra-op threads, once exactly as the tool
  builds it (`onnx_classifier`, onnxruntime's default thread count);
- only when `torch.cuda.is_available()`: torch on the GPU (fp32 channels_last, and bf16
  autocast) and onnxruntime with the CUDA provider.

Each repetition times every engine once over `--images` images (engines interleaved, after one
warm-up pass per batch shape); the table shows the median images/s. Prints plain text: the
machine, the table, the onnxruntime / torch-eager ratio and the largest logit differences
between engines on the same inputs.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import busy_cpu_seconds, cpu_model

from mia_audit.demo import export_onnx
from mia_audit.models.classifier import (
    Classifier,
    OnnxClassifier,
    TorchClassifier,
    onnx_classifier,
)

if TYPE_CHECKING:
    from torch import nn

IMAGE_SIZE = 32
NUM_CLASSES = 10
SEED = 0
TORCH_EAGER = "torch eager cpu"
ORT_CPU = "onnxruntime cpu"


@dataclass
class Engine:
    name: str
    classifier: Classifier
    passes: list[Pass] = field(default_factory=list)

    @property
    def rates(self) -> list[float]:
        return [one.images_per_s for one in self.passes]

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    @property
    def background(self) -> float | None:
        loads = [one.background_cores for one in self.passes]
        return None if None in loads else statistics.median(loads)  # type: ignore[type-var]


@dataclass
class Pass:
    """One timed pass: throughput, and the cores that other processes kept busy meanwhile."""

    images_per_s: float
    background_cores: float | None


def machine(threads: int) -> str:
    import onnxruntime as ort
    import torch
    import torchvision

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (
        f"machine: {cpu_model()} | cpu_count={os.cpu_count()} | threads={threads} | "
        f"gpu: {gpu}\n"
        f"python {platform.python_version()} | torch {torch.__version__} | "
        f"torchvision {torchvision.__version__} | onnxruntime {ort.__version__} | "
        f"{platform.platform()}"
    )


def build_model() -> nn.Module:
    import torch
    import torchvision

    torch.manual_seed(SEED)
    model: nn.Module = torchvision.models.resnet18(weights=None, num_classes=NUM_CLASSES)
    return model.eval()


def ort_cpu_classifier(path: Path, threads: int) -> OnnxClassifier:
    """The tool's CPU session options (no spinning), with a fixed intra-op thread count."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    session = ort.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )
    spec = session.get_inputs()[0]
    return OnnxClassifier(session, "cpu", spec.name, np.dtype(np.float32), None)


def make_engines(model: nn.Module, onnx_path: Path, threads: int) -> list[Engine]:
    import torch

    engines = [
        Engine(TORCH_EAGER, TorchClassifier(copy.deepcopy(model), "cpu")),
        Engine(ORT_CPU, ort_cpu_classifier(onnx_path, threads)),
        Engine("onnxruntime cpu (tool session)", onnx_classifier(str(onnx_path), "cpu", "bench")),
    ]
    if torch.cuda.is_available():
        engines += [
            Engine("torch cuda fp32 channels_last", TorchClassifier(copy.deepcopy(model), "cuda")),
            Engine(
                "torch cuda bf16 autocast",
                TorchClassifier(copy.deepcopy(model), "cuda", autocast_dtype="bfloat16"),
            ),
        ]
        ort_gpu = onnx_classifier(str(onnx_path), "cuda", "bench")
        provider = "cuda" if ort_gpu.device == "cuda" else "cpu (CUDA provider unavailable)"
        engines.append(Engine(f"onnxruntime {provider}", ort_gpu))
    return engines


def batches(images: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [
        np.ascontiguousarray(images[start : start + batch_size])
        for start in range(0, len(images), batch_size)
    ]


def timed_pass(classifier: Callable[[np.ndarray], np.ndarray], chunks: list[np.ndarray]) -> Pass:
    """One pass over the images; the classifier returns host numpy, so GPU work is done.

    Also measures how many cores other processes kept busy meanwhile (machine-wide busy CPU
    time minus this process's own), since a shared machine makes throughput swing widely.
    """
    count = sum(len(chunk) for chunk in chunks)
    busy_before, own_before = busy_cpu_seconds(), time.process_time()
    start = time.perf_counter()
    for chunk in chunks:
        classifier(chunk)
    seconds = time.perf_counter() - start
    busy_after, own_after = busy_cpu_seconds(), time.process_time()
    background = None
    if busy_before is not None and busy_after is not None:
        others = (busy_after - busy_before) - (own_after - own_before)
        background = max(others, 0.0) / seconds
    return Pass(count / seconds, background)


def warm_up(engine: Engine, chunks: list[np.ndarray]) -> None:
    shapes = {chunk.shape: chunk for chunk in chunks}
    for chunk in shapes.values():
        engine.classifier(chunk)


def print_table(engines: Sequence[Engine], images: int, batch_size: int, repeats: int) -> None:
    print(
        f"resnet18 (ImageNet stem, {NUM_CLASSES} classes, seed {SEED}), "
        f"input 3x{IMAGE_SIZE}x{IMAGE_SIZE} float32, {images} images, batch {batch_size}, "
        f"median of {repeats} repeats"
    )
    width = max(len(engine.name) for engine in engines)
    header = f"{'engine':<{width}}  {'images/s':>10}  {'min':>10}  {'max':>10}  {'other load':>10}"
    print(header)
    for engine in engines:
        load = "n/a" if engine.background is None else f"{engine.background:.2f} cores"
        print(
            f"{engine.name:<{width}}  {engine.median:>10.1f}  "
            f"{min(engine.rates):>10.1f}  {max(engine.rates):>10.1f}  {load:>10}"
        )
    print(
        "(images/s: median over repeats; other load: median cores other processes kept busy "
        "during the timed passes)"
    )


def print_ratios(engines: Sequence[Engine]) -> None:
    """Ratio of the medians, and the median of per-repeat ratios (passes adjacent in time)."""
    by_name = {engine.name: engine for engine in engines}
    eager = by_name[TORCH_EAGER]
    ordered = [by_name[ORT_CPU]] + [e for e in engines if e.name not in (TORCH_EAGER, ORT_CPU)]
    for engine in ordered:
        label = "onnxruntime" if engine.name == ORT_CPU else engine.name
        paired = statistics.median(
            ours / theirs for ours, theirs in zip(engine.rates, eager.rates, strict=True)
        )
        print(
            f"ratio {label} / torch eager (cpu): {engine.median / eager.median:.2f}x "
            f"(median of per-repeat ratios {paired:.2f}x)"
        )


def print_agreement(engines: Sequence[Engine], probe: np.ndarray) -> None:
    reference = engines[0].classifier(probe)
    scale = float(np.abs(reference).max())
    print(f"logit agreement vs {engines[0].name} on {len(probe)} images (max |logit| {scale:.3g}):")
    for engine in engines[1:]:
        logits = engine.classifier(probe)
        diff = float(np.abs(logits - reference).max())
        same = float((logits.argmax(1) == reference.argmax(1)).mean())
        print(f"  {engine.name}: max abs diff {diff:.3g}, argmax agreement {same:.2%}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4096, help="images per timed repetition")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions per engine")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch.set_num_threads and onnxruntime intra-op threads (default: cpu count)",
    )
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    print(machine(args.threads))

    model = build_model()
    images = np.random.default_rng(SEED).standard_normal(
        (args.images, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32
    )
    chunks = batches(images, args.batch_size)
    with tempfile.TemporaryDirectory() as scratch:
        onnx_path = Path(scratch) / "resnet18.onnx"
        export_onnx(model, onnx_path, IMAGE_SIZE)
        engines = make_engines(model, onnx_path, args.threads)
        for engine in engines:
            warm_up(engine, chunks)
        for _ in range(args.repeats):
            for engine in engines:
                engine.passes.append(timed_pass(engine.classifier, chunks))

        print_table(engines, args.images, args.batch_size, args.repeats)
        print_ratios(engines)
        print_agreement(engines, chunks[0])


if __name__ == "__main__":
    main()
