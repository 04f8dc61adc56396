"""The fenced code blocks of README.md and docs/*.md, and how each one is tested.

Every block is preceded by a marker line saying what the tests do with it::

    <!-- snippet: python -->            run in-process, Django set up (tests.settings)
    <!-- snippet: settings -->          a settings fragment: applied, checked, bindings built
    <!-- snippet: shell -->             run with bash against a fresh SQLite example project
    <!-- snippet: server -->            bash that starts servers: each --port must answer
    <!-- snippet: file PATH -->         the block is the file PATH of the repository, verbatim
    <!-- snippet: output PATH -->       what running PATH prints (checked by the test that runs it)
    <!-- snippet: module NAME -->       a Python module that a test imports as NAME
    <!-- snippet: skip REASON -->       not run, for the reason given

tests/test_readme.py fails on a block without a marker, so a new snippet
is either tested or says why not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^<!-- snippet: (\w+)(?: (.*?))? -->$")
FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass(frozen=True)
class Snippet:
    """One fenced block: where it is, its marker, its language and its text."""

    path: str  # relative to the repository
    line: int  # of the opening fence, 1-based
    kind: str | None  # None: no marker
    arg: str
    lang: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def markdown_files() -> list[Path]:
    """README.md and every page of docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def snippets(path: Path) -> list[Snippet]:
    """The fenced blocks of one Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        marker = MARKER.match(lines[i - 1].strip()) if i else None
        found.append(
            Snippet(
                path=str(path.relative_to(ROOT)),
                line=i + 1,
                kind=marker.group(1) if marker else None,
                arg=(marker.group(2) or "") if marker else "",
                lang=fence.group(1),
                code="\n".join(lines[i + 1 : end]) + "\n",
            )
        )
        i = end + 1
    return found


def all_snippets(kind: str | None = None) -> list[Snippet]:
    """Every block of README.md and docs/ (of one kind, if given)."""
    result = [s for path in markdown_files() for s in snippets(path)]
    return [s for s in result if kind is None or s.kind == kind]


def find(kind: str, arg: str) -> Snippet:
    """The one block with this marker (e.g. ``output examples/quickstart_client.py``)."""
    matches = [s for s in all_snippets(kind) if s.arg == arg]
    assert len(matches) == 1, f"expected one '<!-- snippet: {kind} {arg} -->' block: {matches}"
    return matches[0]


def load_module(name: str):
    """Import the ``<!-- snippet: module NAME -->`` block as a module named NAME."""
    import sys
    import types

    snippet = find("module", name)
    module = types.ModuleType(name)
    module.__file__ = snippet.where
    sys.modules[name] = module
    exec(compile(snippet.code, snippet.where, "exec"), module.__dict__)
    return module
