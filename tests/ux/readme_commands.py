"""The shell commands of README.md: every fenced ```bash block, continuation lines joined,
comments dropped, a heredoc kept with its body."""

from __future__ import annotations

import re
from pathlib import Path

FENCE = re.compile(r"^```(\w*)\s*$")
HEREDOC = re.compile(r"<<-?\s*'?(\w+)'?")


def bash_blocks(text: str) -> list[list[str]]:
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        match = FENCE.match(line.strip())
        if match and current is None:
            current = [] if match.group(1) in ("bash", "sh", "shell") else None
            if current is None:  # a fence of another language: skip to its end
                current = ["__skip__"]
            continue
        if line.strip() == "```" and current is not None:
            if current[:1] != ["__skip__"]:
                blocks.append(current)
            current = None
            continue
        if current is not None:
            current.append(line)
    return blocks


def commands(readme: Path) -> list[str]:
    found: list[str] = []
    for block in bash_blocks(readme.read_text(encoding="utf-8")):
        lines = iter(block)
        pending = ""
        for raw in lines:
            line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
            if not line.strip() and not pending:
                continue
            if line.endswith("\\"):
                pending += line[:-1].strip() + " "
                continue
            command = (pending + line.strip()).strip()
            pending = ""
            heredoc = HEREDOC.search(command)
            if heredoc:
                body = []
                for inner in lines:
                    if inner.strip() == heredoc.group(1):
                        break
                    body.append(inner)
                command += "\n" + "\n".join(body)
            for part in command.split(" && ") if "\n" not in command else [command]:
                found.append(part.strip())
    return found
