"""How a GitHub Actions runner reads what a step writes: `$GITHUB_OUTPUT` and the workflow commands
in its log. The Action's tests read a step's output through these models."""

from __future__ import annotations


def parse_outputs(text: str) -> dict[str, str]:
    """Read `$GITHUB_OUTPUT` as the runner does: name=value, or name<<DELIMITER ... DELIMITER."""
    outputs: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            value = []
            for part in lines:
                if part == delimiter:
                    break
                value.append(part)
            outputs[name] = "\n".join(value)
        else:
            name, value_text = line.split("=", 1)
            outputs[name] = value_text
    return outputs


#: The runner's command extensions (workflow commands) and `stop-commands`.
RUNNER_COMMANDS = {
    "set-env", "set-output", "save-state", "add-mask", "add-path", "add-matcher",
    "remove-matcher", "debug", "warning", "error", "notice", "group", "endgroup", "echo",
    "stop-commands",
}  # fmt: skip


HOSTILE_NAME = (
    "leaky\n::error title=forged::this model is private\n::stop-commands::x"
    " ##[stop-commands]y ##[error]forged\r\x1b[2J"
)


def _command(line: str, known: set[str]) -> tuple[str, str] | None:
    """(name, data) of the workflow command in `line`, as the runner parses it, or None."""
    trimmed = line.lstrip()
    if trimmed.startswith("::"):
        end = trimmed.find("::", 2)
        if end >= 0:
            name = trimmed[2:end].split(" ", 1)[0]
            if name.lower() in known:
                return name, trimmed[end + 2 :]
    start = line.find("##[")
    if start >= 0:
        end = line.find("]", start)
        if end >= 0:
            name = line[start + 3 : end].split(" ", 1)[0]
            if name.lower() in known:
                return name, line[end + 1 :]
    return None


def runner_commands(log: str) -> list[str]:
    """The commands a runner would act on in `log`, in order: `name data`."""
    acted: list[str] = []
    stop_token: str | None = None
    for line in log.splitlines():  # a superset of the runner's line breaks
        known = RUNNER_COMMANDS | ({stop_token.lower()} if stop_token else set())
        command = _command(line, known)
        if command is None:
            continue
        name, data = command
        if stop_token is not None:
            if name.lower() == stop_token.lower():
                acted.append("resume")
                stop_token = None
            continue
        if name == "stop-commands":
            stop_token = data
        acted.append(f"{name} {data}")
    return acted


