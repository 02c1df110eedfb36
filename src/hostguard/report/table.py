"""The terminal report: what was not checked first, then findings grouped by severity, each with its fix."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hostguard.findings import Finding, Report, Severity, readable
from hostguard.store.state import Accepted, PastFinding

if TYPE_CHECKING:
    from hostguard.report.diff import HistoryEntry, ScanDiff

SHORT_FINGERPRINT = 12  # enough to name one finding: `hostguard accept` takes any unambiguous 8+ digits
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


def _hidden(suppressed: int, accepted: int) -> str:
    """The line that says findings were left out, and where to see why: never a silent "No findings"."""
    parts = ([f"{suppressed} suppressed by [[suppress.rules]]"] if suppressed else []) + (
        [f"{accepted} accepted (`hostguard accepted` lists them)"] if accepted else [])
    return f"Not shown: {', '.join(parts)}." if parts else ""


def render(report: Report, out: IO[str], *, color: bool | None = None, width: int | None = 120,
           suppressed: int = 0, accepted: int = 0, diff: ScanDiff | None = None) -> None:
    """Write the report for people; ``suppressed`` and ``accepted`` count the findings left out. With ``diff``
    the findings are shown as New (in full), Resolved, Still open and Not checked now."""
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
    hidden = _hidden(suppressed, accepted)
    if diff is not None:
        _render_diff(console, findings, diff, hidden, report.complete)
        return
    if not findings:
        console.print("[green]No findings.[/green]" + (f" {escape(hidden)}" if hidden else ""))
        return
    _severity_tables(console, findings)
    counts = ", ".join(f"{sum(1 for f in findings if f.severity == s)} {s.value}" for s in Severity
                       if any(f.severity == s for f in findings))
    coverage = "Complete." if report.complete else "INCOMPLETE: see Not checked."
    console.print(f"{len(findings)} finding{'s' if len(findings) != 1 else ''}: {counts}. {coverage}"
                  + (f" {escape(hidden)}" if hidden else ""))


def _severity_tables(console: Console, findings: Sequence[Finding], prefix: str = "") -> None:
    """One table per severity: each finding with its evidence and its fix."""
    for sev in Severity:
        group = [f for f in findings if f.severity == sev]
        if not group:
            continue
        table = Table(title=f"{prefix}{sev.value.upper()} ({len(group)})", title_justify="left",
                      title_style=STYLES[sev], show_lines=True, expand=True)
        table.add_column("finding", ratio=3, overflow="fold")
        table.add_column("evidence", ratio=3, overflow="fold")
        table.add_column("fix", ratio=3, overflow="fold")
        for f in group:
            table.add_row(f"[{STYLES[sev]}]{escape(f.id)}[/]\n{escape(readable(f.title))}\n[dim]{escape(_target(f))}\n"
                          f"fingerprint {f.fingerprint[:SHORT_FINGERPRINT]}[/]",
                          escape(_evidence(f)), escape(readable("\n".join(f.remediation.lines()))))
        console.print(table)


def _past_table(console: Console, title: str, entries: Sequence[PastFinding]) -> None:
    """A short table of recorded findings (no evidence: a resolved finding has none now)."""
    table = Table(title=f"{title} ({len(entries)})", title_justify="left", show_lines=False, expand=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("finding", ratio=3, overflow="fold")
    table.add_column("fingerprint", no_wrap=True)
    for e in entries:
        target = " ".join(f"{k}={readable(v['text'] if _is_exact_bytes(v) else v)}" for k, v in e.target.items())
        table.add_row(e.severity, f"{escape(e.check_id)}: {escape(e.title)}\n[dim]{escape(target)}[/]",
                      e.fingerprint[:SHORT_FINGERPRINT])
    console.print(table)


def _render_diff(console: Console, findings: Sequence[Finding], diff: ScanDiff, hidden: str, complete: bool) -> None:
    """``scan --diff``: what changed first (new findings in full), then what went and what stays."""
    if diff.against is None:
        console.print("What changed: no earlier comparable scan (same host and root), so every finding is new.")
    else:
        console.print(f"What changed since scan {diff.against.id} of {diff.against.started} "
                      f"(compared on the {len(diff.compared)} checks both scans selected):")
    new = {f.fingerprint for f in diff.new}
    fresh = [f for f in findings if f.fingerprint in new]
    if fresh:
        _severity_tables(console, fresh, prefix="NEW ")
    else:
        console.print("[green]New: none.[/green]")
    if diff.resolved:
        _past_table(console, "RESOLVED", diff.resolved)
    if diff.open:
        _past_table(console, "STILL OPEN", diff.open)
    if diff.not_checked:
        _past_table(console, "NOT CHECKED NOW (found before; their check did not complete, so not resolved)",
                    diff.not_checked)
    coverage = "Complete." if complete else "INCOMPLETE: see Not checked."
    console.print(f"{len(diff.new)} new, {len(diff.resolved)} resolved, {len(diff.open)} still open"
                  + (f", {len(diff.not_checked)} not checked now" if diff.not_checked else "") + f". {coverage}"
                  + (f" {escape(hidden)}" if hidden else ""))


def render_accepted(host: str, entries: Sequence[Accepted], out: IO[str], *, width: int | None = 120) -> None:
    """``hostguard accepted``: each accepted finding with its check, title, reason and when."""
    console = Console(file=out, no_color=True, width=width, highlight=False, soft_wrap=False)
    if not entries:
        console.print(f"No accepted findings for host {escape(host)}.")
        return
    table = Table(title=f"Accepted findings of host {escape(host)} ({len(entries)})", title_justify="left",
                  show_lines=False, expand=True)
    table.add_column("fingerprint", no_wrap=True)
    table.add_column("check / title", ratio=3, overflow="fold")
    table.add_column("reason", ratio=2, overflow="fold")
    table.add_column("accepted at", no_wrap=True)
    for e in entries:
        what = escape(e.check_id or "(not seen in a recorded scan)") + (f"\n{escape(e.title)}" if e.title else "")
        table.add_row(e.fingerprint, what, escape(e.reason), e.accepted_at)
    console.print(table)


def render_history(host: str, entries: Sequence[HistoryEntry], out: IO[str], *, width: int | None = 120) -> None:
    """``hostguard history``: each kept scan, newest first, with what it found new and resolved."""
    console = Console(file=out, no_color=True, width=width, highlight=False, soft_wrap=False)
    if not entries:
        console.print(f"No recorded scans for host {escape(host)}.")
        return
    table = Table(title=f"Scans of host {escape(host)} ({len(entries)} kept)", title_justify="left", expand=True)
    table.add_column("scan", no_wrap=True, justify="right")
    table.add_column("started", no_wrap=True)
    table.add_column("root", overflow="fold")
    table.add_column("families", ratio=2, overflow="fold")
    table.add_column("complete", no_wrap=True)
    table.add_column("findings", justify="right")
    table.add_column("new / resolved", no_wrap=True)
    for e in entries:
        s, d = e.scan, e.diff
        if d is None:
            change = "? (no coverage recorded)" if s.checks is None else "? (earlier scans pruned)"
        elif d.against is None:
            change = f"{len(d.new)} new (first)"
        else:
            change = f"{len(d.new)} / {len(d.resolved)} vs {d.against.id}"
        table.add_row(str(s.id), s.started, escape(s.root or "(this host)"), escape(", ".join(s.families) or "?"),
                      "yes" if s.complete else "no", str(s.reported), change)
    console.print(table)
