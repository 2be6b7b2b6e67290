"""Storage: one content-addressed store for logits and weights, hashes, and atomic writes."""

from __future__ import annotations
