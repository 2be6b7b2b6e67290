"""The policy file: its schema (composed of the settings each layer owns), loading, error
messages, command-line overrides and the gate floor.
"""

from __future__ import annotations
