"""Classifiers: something that maps a float32 NCHW batch to float32 logits.

Two engines: torch (TorchScript, state dicts, factories) and onnxruntime. Both are imported
lazily so that the CLI starts fast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from mia_audit.errors import AuditError, InputError, ModelError

if TYPE_CHECKING:
    import onnxruntime
    from torch import nn


class OutOfMemory(AuditError):
    """The device ran out of memory for this batch; the caller may retry with a smaller one.

    An AuditError (exit 3) where no caller retries, e.g. the probe batch that checks the model.
    """


class Classifier(Protocol):
    engine: str
    device: str
    #: A batch size the model requires (ONNX models exported with a fixed batch), else None.
    fixed_batch_size: int | None

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


#: The torch autocast dtype of each inference precision (fp32: no autocast).
AUTOCAST_DTYPES: dict[str, str | None] = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}


@dataclass
class TorchClassifier:
    module: nn.Module
    device: str
    #: torch dtype name used under autocast ("bfloat16", "float16"), or None for fp32.
    autocast_dtype: str | None = None
    engine: str = "torch"
    fixed_batch_size: int | None = None

    def __post_init__(self) -> None:
        import torch

        self.module.eval()
        self.module.to(self.device)
        if self.device == "cuda":
            self.module.to(memory_format=torch.channels_last)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        try:
            with torch.inference_mode(), self._autocast():
                inputs = torch.from_numpy(batch).to(self.device, non_blocking=True)
                if self.device == "cuda":
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                outputs = _logits_tensor(self.module(inputs))
                return np.asarray(outputs.float().cpu().numpy())
        except torch.cuda.OutOfMemoryError as error:
            raise OutOfMemory(str(error)) from None
        except RuntimeError as error:
            raise _model_failure(error, batch) from None

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device, dtype=getattr(torch, self.autocast_dtype))


def at_precision(classifier: Classifier, precision: str) -> Classifier:
    """The classifier running at `precision` (fp32, bf16, fp16); only torch models on a GPU
    use autocast, other engines run as exported."""
    if isinstance(classifier, TorchClassifier):
        return replace(classifier, autocast_dtype=AUTOCAST_DTYPES[precision])
    return classifier


def _logits_tensor(outputs: Any) -> Any:
    """Models may return a tensor, a tuple (logits first) or a mapping with 'logits'."""
    if isinstance(outputs, tuple | list):
        return outputs[0]
    if isinstance(outputs, dict):
        return outputs.get("logits", next(iter(outputs.values())))
    if hasattr(outputs, "logits"):
        return outputs.logits
    return outputs


def _model_failure(error: BaseException, batch: np.ndarray) -> ModelError:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ModelError(
        f"the model failed on a batch of shape {tuple(batch.shape)} (N, C, H, W): {first_line}; "
        "check preprocessing (input_size, channels) against what the model expects"
    )


@dataclass
class OnnxClassifier:
    session: onnxruntime.InferenceSession
    device: str
    input_name: str
    input_dtype: np.dtype[Any]
    fixed_batch_size: int | None
    engine: str = "onnx"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        inputs = batch.astype(self.input_dtype, copy=False)
        try:
            outputs = self.session.run(None, {self.input_name: inputs})
        except Exception as error:  # onnxruntime raises its own untyped exceptions
            if "out of memory" in str(error).lower():
                raise OutOfMemory(str(error)) from None
            raise _model_failure(error, batch) from None
        return np.asarray(outputs[0], dtype=np.float32)


def onnx_classifier(path: str, device: str, field: str) -> OnnxClassifier:
    """An onnxruntime session; the CUDA provider only when a GPU is really in use."""
    import onnxruntime as ort

    ort.disable_telemetry_events()  # the CLI also sets ORT_DISABLE_TELEMETRY before import
    # Fatal only: errors come back as exceptions, which the caller turns into one line; logged
    # too, they would print a second, unescaped one (names from the model file included).
    ort.set_default_logger_severity(4)
    options = ort.SessionOptions()
    options.log_severity_level = 4
    # Idle onnxruntime threads otherwise spin and starve the attacks that run next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    where = f"{field}: {path}"
    try:
        session = ort.InferenceSession(path, sess_options=options, providers=providers)
    except Exception as error:  # InvalidProtobuf, Fail, ...: onnxruntime's own types
        problem = external_data_problem(Path(path))
        if problem is not None:
            raise InputError(f"{where}: {problem}") from None
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(
            f"{where}: not a valid ONNX model ({message}); the file may be truncated or "
            "corrupt: export it again"
        ) from None
    used = "cuda" if "CUDAExecutionProvider" in session.get_providers() else "cpu"
    return _describe_onnx_input(session, used, where)


def external_data_problem(path: Path) -> str | None:
    """Why an ONNX model's external data (weights saved beside it, `location` in the model)
    cannot be read, or None when that is not the problem. Called after onnxruntime refused
    the model, whose message would not say which file is missing."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # not parseable at all: onnxruntime's message says so
        return None
    folder = path.resolve().parent
    for tensor in _onnx_tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = entries.get("location", "")
        if Path(location).is_absolute() or ".." in Path(location).parts:
            return (
                f"its weights name external data outside the model's folder ({location!r}); "
                "export the model with its weights inside it, or beside it"
            )
        data = folder / location
        if not data.is_file():
            return (
                f"its weights are stored in a separate file, {location!r}, which is missing "
                f"(looked for {data}); copy that file next to the model, or export the model "
                "with its weights inside it"
            )
        needed = int(entries.get("offset", "0") or 0) + int(entries.get("length", "0") or 0)
        if data.stat().st_size < needed:
            return (
                f"its external data file {location!r} holds {data.stat().st_size} bytes but "
                f"tensor {tensor.name!r} needs {needed}: the file is truncated; copy it again"
            )
    return None


def _onnx_tensors(graph: Any) -> Iterator[Any]:
    """Every tensor of a graph that can hold weights: initializers and constants, subgraphs
    included."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _onnx_tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _onnx_tensors(subgraph)


_ONNX_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def _describe_onnx_input(session: Any, device: str, field: str) -> OnnxClassifier:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise InputError(f"{field}: the ONNX model has {len(inputs)} inputs ({names}); needs one")
    spec = inputs[0]
    if spec.type not in _ONNX_FLOAT_TYPES:
        raise InputError(
            f"{field}: the ONNX model's input {spec.name!r} has type {spec.type}; "
            "expected a float image tensor"
        )
    if len(spec.shape) != 4:
        raise InputError(
            f"{field}: the ONNX model's input {spec.name!r} has shape {spec.shape}; "
            "expected 4 dimensions (N, C, H, W)"
        )
    batch = spec.shape[0] if isinstance(spec.shape[0], int) and spec.shape[0] > 0 else None
    return OnnxClassifier(session, device, spec.name, np.dtype(_ONNX_FLOAT_TYPES[spec.type]), batch)


def onnx_input_shape(classifier: OnnxClassifier) -> tuple[Any, ...]:
    return tuple(classifier.session.get_inputs()[0].shape)
