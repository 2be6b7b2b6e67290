"""The tool's own errors: each carries the exit code the CLI returns for it.

Exit codes (docs/exit-codes.md): 0 every gate condition holds, 1 a condition failed, 2 the
policy, the inputs or the command line are invalid, 3 the audit could not complete.
"""

from __future__ import annotations

EXIT_PASS = 0
EXIT_GATE_FAILED = 1
EXIT_INVALID = 2
EXIT_INCOMPLETE = 3


class MiaAuditError(Exception):
    """Base class. `str(error)` is the message shown to the user: one line, or one line per
    problem (`problems`) when several were found at once (a policy with several mistakes)."""

    exit_code: int = EXIT_INCOMPLETE

    #: Set by `listing`: several problems found at once.
    _problems: tuple[str, ...] = ()

    @property
    def problems(self) -> list[str]:
        """Each problem, printed as its own `error:` line (one, unless `listing` made it)."""
        return list(self._problems) or [str(self)]

    @classmethod
    def listing(cls, problems: list[str]) -> MiaAuditError:
        """An error for several problems found at once; `str()` joins them with newlines."""
        error = cls("\n".join(problems))
        error._problems = tuple(problems)
        return error


class PolicyError(MiaAuditError):
    """The policy file is unreadable or does not validate."""

    exit_code = EXIT_INVALID


class InputError(MiaAuditError):
    """A model or data file named by the policy is missing, unreadable or inconsistent."""

    exit_code = EXIT_INVALID


class AuditError(MiaAuditError):
    """Something failed while the audit ran (model inference, training, an attack)."""

    exit_code = EXIT_INCOMPLETE


class ModelError(AuditError):
    """The model failed on a batch or produced unusable outputs (NaN, wrong shape).

    Raised where the model file is not known; the audit names `model.path` in front.
    """
