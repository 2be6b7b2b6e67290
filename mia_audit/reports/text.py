"""Text from policies and data, made safe to print as one terminal or CI-log line.

A policy `name`, an attack `id`, a waiver reason or a file name can hold anything. The GitHub
Actions runner reads every log line for workflow commands: `::command::` at the start of a line
(after leading spaces) and the legacy `##[command]` anywhere in it. Printed as is,
`name: "x\\n::error::forged"` would raise a forged annotation, and `##[stop-commands]token` would
silence the tool's own. Everything the CLI prints from such strings goes through `printable`.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: The legacy workflow-command prefix, which the runner finds anywhere in a line.
_LEGACY_COMMAND = "##["


def printable(text: str) -> str:
    """`text` as exactly one line that no CI runner or terminal reads as a command.

    Control and other non-printable characters are escaped Python-style (`\\n`, `\\x1b`,
    `\\u2028`); `##[` becomes `##\\x5b`, and a line that would start with `::` starts with
    `\\x3a:` instead.
    """
    if not text.isprintable():
        text = "".join(char if char.isprintable() else _escape(char) for char in text)
    text = text.replace(_LEGACY_COMMAND, "##\\x5b")
    if text.lstrip(" ").startswith("::"):
        text = text.replace(":", "\\x3a", 1)
    return text


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """`1 view`, `2 views`: the count with the noun in the right number (last word only)."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {plural_form or noun + 's'}"


def duration_text(seconds: float) -> str:
    """`42s`, `3m05s`, `2h07m`: short and unambiguous in a log line."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
