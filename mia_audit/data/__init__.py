"""Data: file formats, images in one canonical layout, and the audit set built from them."""

from __future__ import annotations
