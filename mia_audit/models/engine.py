"""What computes a model's logits: the engine, the device and the precision. All three change
the logits, so the key is part of every logits cache key, and it sets the spot check's
tolerance (`mia_audit.models.spot_check`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineKey:
    """`engine:device:precision`, e.g. ``torch:cuda:bfloat16``; its text is the cache key's."""

    #: "torch" or "onnxruntime".
    engine: str
    #: The device the engine runs on ("cpu", "cuda").
    device: str
    #: "fp32", or the autocast dtype ("bfloat16", "float16").
    precision: str = "fp32"

    def __str__(self) -> str:
        return f"{self.engine}:{self.device}:{self.precision}"

    @property
    def half(self) -> bool:
        """Whether the logits are computed at half precision (bf16 or fp16)."""
        return self.precision != "fp32"

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")
