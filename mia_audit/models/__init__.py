"""Target models: loading (ONNX, TorchScript, state dicts, factories), classifiers (torch and
onnxruntime), batched inference with the logits cache, and the spot check of cached logits.
"""

from __future__ import annotations
