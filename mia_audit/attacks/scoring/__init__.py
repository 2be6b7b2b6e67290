"""The reference-attack math (LiRA, RMIA) as pure numpy, tested against direct implementations."""

from __future__ import annotations
