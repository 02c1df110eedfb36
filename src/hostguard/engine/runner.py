"""The runner: hands host facts to the selected checks and gathers findings and coverage.

The engine owns the loops and the budgets: a per-item check (``each=``) is called once per item, an
item that raises is recorded in ``skipped`` with its name while the other items' findings are kept,
and a check's ``budget`` becomes ``ctx.deadline``, past which the loop stops and says how many items
were left. A check that fails half-way keeps the findings it yielded before failing. One fingerprint is
one finding: findings of one check that share a fingerprint (per-item checks whose target holds no item
id: four workers of one miner, two connections of one program to one address) are merged into the first
(:func:`merge_same_target`), so the store, ``fix`` and ``--diff``, which key on fingerprints, see them all.

After the checks, the layer over findings: ``[[suppress.rules]]`` from the config, then the findings
accepted on this host (state.db). Every finding of the scan is recorded with what became of it, and every
selected check with whether it ran to completion, so ``hostguard accept`` can name a fingerprint's check
later and ``scan --diff`` can tell a fix from a check that ran out of budget; the history is then pruned
to ``[scan] history_keep`` scans of this host.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from hostguard.config import Config
from hostguard.engine import suppress
from hostguard.engine.context import Context, ProgressFn
from hostguard.engine.facts import HOST_ID, SCAN_TIME, STATE, Facts, closure
from hostguard.engine.registry import CheckSpec, Registry, ScanConfig, ScanEnd, default_registry
from hostguard.findings import Finding, HostId, Report, Skipped, SkipReason
from hostguard.host.base import Host, Unavailable
from hostguard.store.state import ACCEPTED, REPORTED, SUPPRESSED, StateStore

MAX_ITEM_LABEL = 200
MAX_MERGED = 20  # evidence of this many more findings is kept in a merged one; the rest are counted


@dataclass
class ScanOutcome:
    """A report plus what the report does not carry (timings, how many findings were hidden and why)."""

    report: Report
    family_seconds: dict[str, float] = field(default_factory=dict)
    suppressed: int = 0
    accepted: int = 0
    scan_id: int = 0  # its id in state.db's history (``StateStore.scan``, ``scan --diff``); 0 when not recorded


def now() -> datetime:
    """Current local time with its offset, seconds precision."""
    return datetime.now(UTC).astimezone().replace(microsecond=0)


def now_iso() -> str:
    """Current time with its offset, seconds precision."""
    return now().isoformat(timespec="seconds")


def item_label(item: Any) -> str:
    """How a skipped entry names an item: its ``label()`` when it has one, else its repr (shortened)."""
    label = getattr(item, "label", None)
    text = str(label() if callable(label) else item)
    return text if len(text) <= MAX_ITEM_LABEL else text[: MAX_ITEM_LABEL - 3] + "..."


def run_check(spec: CheckSpec, facts: Facts, *, progress: ProgressFn | None = None,
              cancel: threading.Event | None = None) -> tuple[list[Finding], list[Skipped]]:
    """Run one check: resolve its facts, loop over items when it is per-item, catch its failures.

    The time budget starts once the facts are collected: reading the host is not the check's work.
    """
    ctx = Context(spec, facts, progress, cancel)
    found: list[Finding] = []
    try:
        for fact in spec.needs:
            facts.get(fact)
        ctx.start_budget()
        if spec.each is None:
            found.extend(spec.func(ctx))
        else:
            _run_items(spec, ctx, list(facts.get(spec.each)), found)
    except Unavailable as exc:
        ctx.skip(exc.reason, exc.detail)
    except Exception as exc:  # a bug in one check must not hide the others' results, nor its own so far
        ctx.skip(SkipReason.ERROR, f"{type(exc).__name__}: {exc}")
    return merge_same_target(found), ctx.skipped


def merge_same_target(found: list[Finding]) -> list[Finding]:
    """One finding per fingerprint, in first-seen order.

    The later findings of a target go into the first: the highest severity, their evidence under
    ``evidence["more"]`` (up to :data:`MAX_MERGED`, with ``more_count`` telling how many there were in all),
    and their remediation steps the first does not already have (a kill step per process). A family that
    knows better how to group its items (processes) does it itself; then nothing is left to merge here.
    """
    groups: dict[str, list[Finding]] = {}
    for finding in found:
        groups.setdefault(finding.fingerprint, []).append(finding)
    return [group[0] if len(group) == 1 else _merged(group) for group in groups.values()]


def _merged(group: list[Finding]) -> Finding:
    first, rest = group[0], group[1:]
    steps = list(first.remediation.steps)
    for other in rest:
        steps += [step for step in other.remediation.steps if step not in steps]
    evidence = {**first.evidence, "more": [dict(f.evidence) for f in rest[:MAX_MERGED]], "more_count": len(rest)}
    severity = max((f.severity for f in group), key=lambda sev: sev.rank)
    title = f"{first.title} (and {len(rest)} more like it)"
    return replace(first, severity=severity, title=title, evidence=evidence,
                   remediation=replace(first.remediation, steps=tuple(steps)))


def _run_items(spec: CheckSpec, ctx: Context, items: list[Any], found: list[Finding]) -> None:
    for index, item in enumerate(items):
        ctx.progress(index, len(items))
        if ctx.cancel.is_set() or ctx.time_left() <= 0:
            why = "cancelled" if ctx.cancel.is_set() else f"time budget of {spec.deadline_seconds(ctx.config):g} s spent"
            ctx.skip(SkipReason.BUDGET, f"{len(items) - index} of {len(items)} items not checked: {why}")
            return
        try:
            found.extend(spec.func(item, ctx))
        except Unavailable as exc:
            ctx.skip(exc.reason, exc.detail, item_label(item))
        except Exception as exc:  # one bad item must not hide the others
            ctx.skip(SkipReason.ERROR, f"{type(exc).__name__}: {exc}", item_label(item))


def run_scan(host: Host, config: Config, state: StateStore, *, only: Iterable[str] | None = None,
             progress: ProgressFn | None = None, root_label: str | None = None,
             registry: Registry | None = None, started: datetime | None = None, record: bool = True) -> ScanOutcome:
    """Scan ``host`` with the selected checks, apply suppression and acceptance, run the post-scan hooks,
    record the scan. ``started`` (default: now) is the scan's time, as the report and the store see it.
    ``record=False`` (the re-scans ``hostguard fix`` makes to verify a fix) keeps the scan out of the history
    and "what changed": it is a check of one change, not a look at the host the owner asked for."""
    registry = registry or default_registry()
    specs = registry.select(only)
    rules = suppress.resolve(config[suppress.SuppressConfig].rules, registry.canonical, registry.families)
    when = (started or now()).astimezone().replace(microsecond=0)  # aware: compared with stored times
    started_iso = when.isoformat(timespec="seconds")
    host_id = HostId(host.machine_id(), state.state_uuid(), host.hostname())
    facts = Facts(host, config, given={STATE: state, HOST_ID: host_id, SCAN_TIME: when})
    findings: list[Finding] = []
    skipped: list[Skipped] = []
    seconds: dict[str, float] = {}
    for spec in specs:
        t0 = time.perf_counter()
        found, skips = run_check(spec, facts, progress=progress)
        seconds[spec.family] = seconds.get(spec.family, 0.0) + time.perf_counter() - t0
        findings.extend(found)
        skipped.extend(skips)
    unsuppressed, suppressed = suppress.apply(findings, rules)
    kept, accepted = suppress.apply_accepted(unsuppressed, state.accepted_fingerprints(host_id.id))
    end = ScanEnd(facts, state, host_id, started_iso, frozenset(s.id for s in specs))
    for name in _hook_families(registry, specs, facts):
        hook = registry.families[name].after_scan
        if hook is None:
            continue
        try:
            hook(end)
        except Exception as exc:  # recorded, never a traceback: the scan's findings still stand
            skipped.append(Skipped(name, f"{name} (after scan)", SkipReason.ERROR, f"{type(exc).__name__}: {exc}"))
    report = Report(host_id, started_iso, tuple(kept), tuple(dict.fromkeys(skipped)), root_label, registry.rules(specs))
    hidden = {f.fingerprint for f in accepted}
    shown = {f.fingerprint for f in kept}
    seen = [(f, REPORTED if f.fingerprint in shown else ACCEPTED if f.fingerprint in hidden else SUPPRESSED)
            for f in findings]
    if not record:
        return ScanOutcome(report, seconds, suppressed, len(accepted), 0)  # 0: not in the history
    incomplete = {s.check for s in report.skipped}
    scan_id = state.record_scan(host_id.id, started_iso, root_label, report.complete, len(kept), seen,
                                checks={s.id: s.id not in incomplete for s in specs})
    state.prune_scans(host_id.id, config[ScanConfig].history_keep)
    return ScanOutcome(report, seconds, suppressed, len(accepted), scan_id)


def _hook_families(registry: Registry, specs: Iterable[CheckSpec], facts: Facts) -> list[str]:
    """Families whose post-scan hook runs: the selected ones, and any other whose checks read a host fact this
    scan read (``--only ssh`` reads /etc/passwd too: the accounts family records the accounts it saw).

    Given facts (the store, the host id, the time) do not count: every scan has them.
    """
    names = list(dict.fromkeys(s.family for s in specs))
    for name in registry.families:
        if name in names:
            continue
        needs = [f for s in registry.checks if s.family == name for f in s.needs]
        if any(f.collect is not None and facts.loaded(f) for f in closure(needs)):
            names.append(name)
    return names
