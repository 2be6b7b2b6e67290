"""The package's version (read by the build, `--version` and every result.json)."""

__version__ = "0.1.0"
