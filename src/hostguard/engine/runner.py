"""The runner: hands host facts to the selected checks and gathers findings and coverage."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hostguard.engine import suppress
from hostguard.engine.context import Context, ProgressFn
from hostguard.engine.facts import Facts
from hostguard.engine.registry import CheckSpec, select
from hostguard.findings import Finding, HostId, Report, Skipped, SkipReason
from hostguard.host.base import Host, Unavailable
from hostguard.store.state import StateStore


@dataclass
class ScanOutcome:
    """A report plus what the report does not carry (timings, suppressed count)."""

    report: Report
    family_seconds: dict[str, float] = field(default_factory=dict)
    suppressed: int = 0


def now_iso() -> str:
    """Current time with its offset, seconds precision."""
    return datetime.now(UTC).astimezone().isoformat(timespec="seconds")


def run_check(spec: CheckSpec, facts: Facts, config: dict[str, Any], *, deadline: float | None = None,
              progress: ProgressFn | None = None, cancel: threading.Event | None = None,
              ) -> tuple[list[Finding], list[Skipped]]:
    """Run one check: resolve its facts, loop over items when it is per-item, catch its failures."""
    ctx = Context(spec, facts, config, deadline, progress, cancel or threading.Event())
    try:
        for name in spec.needs:
            facts.get(name)
        if spec.each is None:
            found = list(spec.func(ctx))
        else:
            found = []
            for item in facts.get(spec.each):
                if ctx.cancel.is_set():
                    ctx.skip(SkipReason.BUDGET, "cancelled")
                    break
                found.extend(spec.func(item, ctx))
    except Unavailable as exc:
        return [], [*ctx.skipped, Skipped(spec.family, spec.id, exc.reason, exc.detail)]
    except Exception as exc:  # a bug in one check must not hide the others' results
        return [], [*ctx.skipped, Skipped(spec.family, spec.id, SkipReason.ERROR, f"{type(exc).__name__}: {exc}")]
    return found, ctx.skipped


def run_scan(host: Host, config: dict[str, Any], state: StateStore, *, only: Iterable[str] | None = None,
             progress: ProgressFn | None = None, root_label: str | None = None) -> ScanOutcome:
    """Scan ``host`` with the selected families; record the scan and the accounts seen in ``state``."""
    started = now_iso()
    host_id = HostId(host.machine_id(), state.state_uuid(), host.hostname())
    previous = state.known_accounts(host_id.id)
    facts = Facts(host, config, extra={"known_accounts": previous})
    findings: list[Finding] = []
    skipped: list[Skipped] = []
    seconds: dict[str, float] = {}
    for spec in select(only):
        t0 = time.perf_counter()
        found, skips = run_check(spec, facts, config, progress=progress)
        seconds[spec.family] = seconds.get(spec.family, 0.0) + time.perf_counter() - t0
        findings.extend(found)
        skipped.extend(skips)
    kept, suppressed = suppress.apply(findings, config["suppress"]["rules"])
    report = Report(host_id, started, tuple(kept), tuple(_dedupe(skipped)), root_label)
    if facts.loaded("accounts"):
        accounts = facts.get("accounts")
        state.remember_accounts(host_id.id, [(u.name, u.uid) for u in accounts.users], started)
    state.record_scan(host_id.id, started, root_label, report.complete, len(kept))
    return ScanOutcome(report, seconds, suppressed)


def _dedupe(skipped: list[Skipped]) -> list[Skipped]:
    seen: set[Skipped] = set()
    out = []
    for s in skipped:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out
