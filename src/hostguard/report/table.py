"""The terminal report: what was not checked first, then findings grouped by severity, each with its fix."""

from __future__ import annotations

import json
from typing import IO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hostguard.findings import Finding, Report, Severity, readable

STYLES = {Severity.CRITICAL: "bold white on red", Severity.HIGH: "bold red", Severity.MEDIUM: "yellow",
          Severity.LOW: "cyan", Severity.INFO: "dim"}


def _target(f: Finding) -> str:
    t = dict(f.target)
    kind = t.pop("kind")
    main = t.pop(kind, None) if kind in t else None
    words = [kind, *([readable(main)] if main is not None else []), *(f"{k}={readable(v)}" for k, v in t.items())]
    return " ".join(words)


def _is_exact_bytes(value: object) -> bool:
    return isinstance(value, dict) and set(value) == {"text", "base64"}


def _evidence(f: Finding) -> str:
    parts = []
    for key, value in f.to_dict()["evidence"].items():
        if _is_exact_bytes(value):
            value = value["text"]  # a non-UTF-8 value: its readable form (the exact bytes are in --format json)
        if value in (None, [], {}, "") or (isinstance(value, dict) and any(isinstance(v, dict) for v in value.values())):
            continue  # empty, or nested machine data (still in --format json)
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if len(text) > 160:
            text = text[:157] + "..."
        parts.append(f"{key}: {text}")
    return "\n".join(parts)


def render(report: Report, out: IO[str], *, color: bool | None = None, width: int | None = 120) -> None:
    """Write the report for people."""
    console = Console(file=out, force_terminal=color, no_color=color is False, width=width,
                      highlight=False, soft_wrap=False)
    host = report.host
    where = f" (tree {report.root})" if report.root else ""
    console.print(f"[bold]hostguard scan[/bold] of {escape(readable(host.hostname) or '?')}{escape(where)}"
                  f" at {report.started}")
    if report.skipped:
        table = Table(title="Not checked (coverage is incomplete)", title_justify="left", show_lines=False)
        table.add_column("check")
        table.add_column("reason")
        table.add_column("detail", overflow="fold")
        for s in report.skipped:
            check = escape(s.check) + (f"\n[dim]{escape(readable(s.item))}[/dim]" if s.item else "")
            table.add_row(check, str(s.reason), escape(readable(s.detail)))
        console.print(table)
    else:
        console.print("Coverage: every selected check ran.")
    findings = report.sorted_findings()
    if not findings:
        console.print("[green]No findings.[/green]")
        return
    for sev in Severity:
        group = [f for f in findings if f.severity == sev]
        if not group:
            continue
        table = Table(title=f"{sev.value.upper()} ({len(group)})", title_justify="left", title_style=STYLES[sev],
                      show_lines=True, expand=True)
        table.add_column("finding", ratio=3, overflow="fold")
        table.add_column("evidence", ratio=3, overflow="fold")
        table.add_column("fix", ratio=3, overflow="fold")
        for f in group:
            table.add_row(f"[{STYLES[sev]}]{escape(f.id)}[/]\n{escape(readable(f.title))}\n[dim]{escape(_target(f))}[/]",
                          escape(_evidence(f)), escape(readable("\n".join(f.remediation.lines()))))
        console.print(table)
    counts = ", ".join(f"{sum(1 for f in findings if f.severity == s)} {s.value}" for s in Severity
                       if any(f.severity == s for f in findings))
    coverage = "Complete." if report.complete else "INCOMPLETE: see Not checked."
    console.print(f"{len(findings)} finding{'s' if len(findings) != 1 else ''}: {counts}. {coverage}")
