"""Text mia-audit prints cannot forge GitHub workflow commands: printable() gives one inert line,
checked against a model of the runner."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mia_audit.reports.text import printable
from tests.github_runner import HOSTILE_NAME, runner_commands


def test_runner_model_sees_the_forgeries() -> None:
    """The parser above is not toothless: unescaped, the hostile name is three commands."""
    log = f"FAIL {HOSTILE_NAME}: 1 of 1 gate conditions failed\n"
    assert [c.split(" ")[0] for c in runner_commands(log)] == ["error", "stop-commands"]
    assert runner_commands("a ##[error]x\n") == ["error x"]


@given(st.text())
def test_printable_is_one_inert_line(text: str) -> None:
    line = printable(text)
    assert line.isprintable()
    assert len(line.splitlines()) <= 1
    assert runner_commands(line) == []
    assert runner_commands("prefix " + line) == []


@given(
    st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")))
)
def test_printable_keeps_ordinary_text(text: str) -> None:
    if text.isprintable() and "##[" not in text and not text.lstrip(" ").startswith("::"):
        assert printable(text) == text


def test_escapes_are_readable() -> None:
    assert printable("a\nb\tc\x1b[0m\u2028") == "a\\nb\\tc\\x1b[0m\\u2028"
    assert printable("::error::x") == "\\x3a:error::x"
    assert printable("x ##[error]y") == "x ##\\x5berror]y"


