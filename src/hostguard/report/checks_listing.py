"""``hostguard checks``: every check's record (id, severity, what it looks at, why), from rule metadata only."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import IO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hostguard.findings import Rule


def prose(doc: str) -> str:
    """A docstring as running text: lines of a paragraph joined, RST ``literals`` shown as `literals`."""
    paragraphs = [" ".join(line.strip() for line in block.splitlines()) for block in doc.split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p).replace("``", "`")


def render_json(rules: Sequence[Rule]) -> str:
    """The listing as a JSON array."""
    return json.dumps([r.to_dict() for r in rules], indent=2, ensure_ascii=False) + "\n"


def render_table(rules: Sequence[Rule], out: IO[str], *, width: int | None = None) -> None:
    """The listing for people: one row per check, its docstring as the explanation."""
    table = Table(show_lines=True, expand=True)
    for col in ("id", "severity", "looks at", "what and why"):
        table.add_column(col, overflow="fold")
    for r in rules:
        extra = []
        if r.tags:
            extra.append("ATT&CK: " + ", ".join(r.tags))
        if r.references:
            extra.append("See: " + " ".join(r.references))
        if r.aliases:
            extra.append("Also known as: " + ", ".join(r.aliases))
        text = f"[bold]{escape(r.summary)}[/bold]\n{escape(prose(r.doc))}"
        text += "".join(f"\n[dim]{escape(e)}[/dim]" for e in extra)
        table.add_row(escape(r.id), str(r.severity), escape(", ".join(r.looks_at)), text)
    Console(file=out, width=width, highlight=False).print(table)
