"""A SIGTERM is never swallowed as an ordinary exception by the CLI's guard."""

from __future__ import annotations

import os
import signal
import time

import pytest


def test_sigterm_is_not_swallowed_by_a_broad_except(capsys: pytest.CaptureFixture[str]) -> None:
    """Code that takes any Exception for a recoverable failure (the model cache treats an
    unreadable file as missing and deletes it; wrappers around user code) must not swallow a
    SIGTERM arriving while it runs: the run still stops with exit code 3."""
    import typer

    from mia_audit.cli.app import _guard

    with pytest.raises(typer.Exit) as exited, _guard(verbose=False):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here, at once
        except Exception:
            pytest.fail("SIGTERM was caught as an ordinary Exception")
    assert exited.value.exit_code == 3
    assert capsys.readouterr().err.startswith("error: interrupted")


