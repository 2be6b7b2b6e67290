"""mia-audit: a membership-inference privacy gate for image classifiers.

The Python API (docs/python-api.md): `audit` runs an audit on a model and arrays,
`audit_policy` on a policy file; both return an `AuditResult` (the `Result` that result.json
holds, plus every attack's per-sample scores). Heavy libraries load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mia_audit._version import __version__

__all__ = [
    "AttackResult",
    "AuditResult",
    "Result",
    "__version__",
    "audit",
    "audit_policy",
]

if TYPE_CHECKING:
    from mia_audit.api import AuditResult, audit, audit_policy
    from mia_audit.result import AttackResult, Result

_EXPORTS = {
    "audit": "mia_audit.api",
    "audit_policy": "mia_audit.api",
    "AuditResult": "mia_audit.api",
    "Result": "mia_audit.result",
    "AttackResult": "mia_audit.result",
}


def __getattr__(name: str) -> Any:
    """Load the API on first use, so `import mia_audit` (and `mia-audit --help`) stays fast."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mia_audit' has no attribute {name!r}")
