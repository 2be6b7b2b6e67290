"""The command line and the GitHub Action step: the edges that own I/O and exit codes."""

from mia_audit.cli.app import app, main

__all__ = ["app", "main"]
