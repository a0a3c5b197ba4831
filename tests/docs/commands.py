"""The shell commands the documentation gives, extracted from the Markdown itself.

Sources (``DOCS``): ``README.md``, ``examples/README.md``, ``examples/*/README.md`` and
``helm/waitroom-proxy/README.md``. What counts as a command:

- every line of a fenced block marked ``sh``, ``bash``, ``shell`` or ``console`` (for
  ``console``, the lines starting with ``$ ``), a trailing ``\\`` joining the next line,
  comment-only lines dropped and a trailing ``# comment`` removed;
- in ``examples/README.md``, every code span of a table's "run it" column, and every code span
  of any table that runs ``docker``.

Each command is its text with runs of spaces collapsed: that text is the key under which
``tests/docs/test_doc_commands.py`` registers the check that runs it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHELL_FENCES = frozenset({"sh", "bash", "shell", "console"})


def doc_files() -> list[Path]:
    return [
        REPO / "README.md",
        REPO / "examples" / "README.md",
        *sorted((REPO / "examples").glob("*/README.md")),
        REPO / "helm" / "waitroom-proxy" / "README.md",
    ]


@dataclass(frozen=True)
class DocCommand:
    doc: str
    """The file, relative to the repository."""
    line: int
    text: str
    block: int | None = None
    """Index of the fenced block in its file (commands of one block run together), or None
    for a table cell."""

    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def _strip_comment(line: str) -> str:
    """Drop a trailing ``# comment`` that is outside quotes."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _fenced(path: Path, rel: str) -> list[DocCommand]:
    out: list[DocCommand] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    block = -1
    i = 0
    while i < len(lines):
        fence = re.match(r"^(```+|~~~+)\s*([\w-]*)", lines[i])
        if not fence:
            i += 1
            continue
        marker, lang = fence.group(1), fence.group(2).lower()
        i += 1
        body_start = i
        while i < len(lines) and not lines[i].startswith(marker[:3]):
            i += 1
        body = lines[body_start:i]
        i += 1
        if lang not in SHELL_FENCES:
            continue
        block += 1
        pending = ""
        pending_line = 0
        for offset, raw in enumerate(body):
            line = raw
            if lang == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            if not pending:
                pending_line = body_start + offset + 1
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            text = _normalise(_strip_comment(pending + line))
            pending = ""
            if text:
                out.append(DocCommand(rel, pending_line, text, block))
    return out


def _table_spans(path: Path, rel: str) -> list[DocCommand]:
    out: list[DocCommand] = []
    run_column: int | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.startswith("|"):
            run_column = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if "run it" in cells:
            run_column = cells.index("run it")
            continue
        for index, cell in enumerate(cells):
            for span in re.findall(r"`([^`]+)`", cell):
                if index == run_column or span.startswith("docker ") or " docker " in span:
                    out.append(DocCommand(rel, number, _normalise(span)))
    return out


def doc_commands() -> list[DocCommand]:
    """Every command of every documentation file, in file order."""
    out: list[DocCommand] = []
    for path in doc_files():
        rel = path.relative_to(REPO).as_posix()
        out.extend(_fenced(path, rel))
        if rel == "examples/README.md":
            out.extend(_table_spans(path, rel))
    return out


def block_of(command: DocCommand) -> list[DocCommand]:
    """The commands of the fenced block ``command`` is in (itself alone for a table cell)."""
    if command.block is None:
        return [command]
    return [c for c in doc_commands() if c.doc == command.doc and c.block == command.block]
