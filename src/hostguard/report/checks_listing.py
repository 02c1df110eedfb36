"""``hostguard checks``: every check's record (id, severity, what it looks at, why), from rule metadata only.

A check's docstring is its documentation, written with reStructuredText inline literals (in double
backquotes; now and then a word in single backquotes, or a role such as :class: before one). People read
it here, so the markup is rendered, never shown: on a terminal a literal is styled; on a pipe it is plain
text with the literal in 'quotes' (readable in a pager or a mail, and found by grep). The layout is one
block per check rather than a table: a table's narrow column broke sentences and links apart.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Sequence
from typing import IO

from rich.console import Console
from rich.padding import Padding
from rich.text import Text

from hostguard.findings import Rule, Severity

# ``literal``, :role:`target`, `interpreted text` (RST's default role, and Markdown's code)
LITERAL = re.compile(r"``(?P<double>.+?)``|:[\w.+-]+:`(?P<role>[^`]+)`|`(?P<single>[^`]+)`")
INDENT = 4
PLAIN_WIDTH = 100
STYLES = {Severity.CRITICAL: "bold white on red", Severity.HIGH: "bold red", Severity.MEDIUM: "yellow",
          Severity.LOW: "cyan", Severity.INFO: "dim"}


def spans(text: str) -> list[tuple[str, bool]]:
    """``text`` as (piece, is_literal) pairs, the markup taken off."""
    out: list[tuple[str, bool]] = []
    pos = 0
    for m in LITERAL.finditer(text):
        if m.start() > pos:
            out.append((text[pos:m.start()], False))
        out.append((m.group("double") or m.group("role") or m.group("single") or "", True))
        pos = m.end()
    if pos < len(text):
        out.append((text[pos:], False))
    return out


def paragraphs(doc: str) -> list[str]:
    """A docstring's paragraphs, each one line (the source's line breaks are only wrapping)."""
    blocks = (" ".join(line.strip() for line in block.splitlines()) for block in textwrap.dedent(doc).split("\n\n"))
    return [b for b in blocks if b]


def plain(text: str) -> str:
    """Running text with the markup rendered for a pipe: literals in single quotes."""
    return "".join(f"'{piece}'" if literal else piece for piece, literal in spans(text))


def prose(doc: str) -> str:
    """A docstring as plain running text: paragraphs joined, markup rendered (see :func:`plain`)."""
    return "\n\n".join(plain(p) for p in paragraphs(doc))


def _extras(rule: Rule) -> list[str]:
    extra = [f"Looks at: {', '.join(rule.looks_at)}"] if rule.looks_at else []
    if rule.tags:
        extra.append("ATT&CK: " + ", ".join(rule.tags))
    if rule.references:
        extra.append("See: " + " ".join(rule.references))
    if rule.aliases:
        extra.append("Also known as: " + ", ".join(rule.aliases))
    return extra


def render_json(rules: Sequence[Rule]) -> str:
    """The listing as a JSON array."""
    return json.dumps([r.to_dict() for r in rules], indent=2, ensure_ascii=False) + "\n"


def render_plain(rules: Sequence[Rule], out: IO[str], *, width: int = PLAIN_WIDTH) -> None:
    """The listing as plain text: a heading line per check, then its explanation indented, wrapped at
    ``width`` between words (a link or a long path is never broken)."""
    pad = " " * INDENT

    def wrap(text: str) -> str:
        return textwrap.fill(text, width=max(width, INDENT + 20), initial_indent=pad, subsequent_indent=pad,
                             break_long_words=False, break_on_hyphens=False)

    blocks = []
    for r in rules:
        lines = [f"{r.id}  [{r.severity}]  {plain(r.summary)}"]
        lines += [wrap(plain(p)) for p in paragraphs(r.doc)]
        lines += [wrap(e) for e in _extras(r)]
        blocks.append("\n".join(lines))
    out.write("\n\n".join(blocks) + ("\n" if blocks else ""))


def _styled(text: str, style: str = "") -> Text:
    result = Text(style=style)
    for piece, literal in spans(text):
        result.append(piece, style="bold cyan" if literal else "")
    return result


def render_terminal(rules: Sequence[Rule], out: IO[str], *, width: int | None = None) -> None:
    """The listing for a terminal: the same blocks, with severity colours and literals styled."""
    console = Console(file=out, width=width, highlight=False, force_terminal=True)
    for i, r in enumerate(rules):
        if i:
            console.print()
        head = Text.assemble((r.id, "bold"), "  ", (f"[{r.severity}]", STYLES[r.severity]), "  ")
        head.append_text(_styled(r.summary, "bold"))
        console.print(head)
        for p in paragraphs(r.doc):
            console.print(Padding(_styled(p), (0, 0, 0, INDENT)))
        for e in _extras(r):
            console.print(Padding(Text(e, style="dim"), (0, 0, 0, INDENT)))


def render_table(rules: Sequence[Rule], out: IO[str], *, width: int | None = None,
                 terminal: bool | None = None) -> None:
    """The listing for people (the name ``hostguard checks`` calls): styled on a terminal, plain on a pipe.

    ``terminal`` defaults to whether ``out`` is one.
    """
    if terminal is None:
        isatty = getattr(out, "isatty", None)
        terminal = bool(isatty()) if callable(isatty) else False
    if terminal:
        render_terminal(rules, out, width=width)
    else:
        render_plain(rules, out, width=width or PLAIN_WIDTH)
