"""Distributed brute force: failures against one account from many sources (password spraying by a botnet).

Grouped by (service, account): a database account ``root`` is not the system's ``root``. Each source stays
under the per-source thresholds, so :mod:`~hostguard.detect.brute_force` sees nothing; here ``failures``
attempts from at least ``sources`` distinct addresses within ``window`` make the alert. Only ``failure``
events count: a probe names no account. Blocking one source would not help, so the remediation is by hand
(keys only, or a strong password and a lockout for that account).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hostguard.detect.base import SAMPLES, Context, Logon, Raised, Window, alert, iso, top
from hostguard.findings import Alert, readable
from hostguard.remediation import Remediation

DETECTOR = "logon.distributed_brute_force"


@dataclass(slots=True)
class Account:
    """One account's window (keyed by source) and the episode under way (a new object per episode)."""

    window: Window
    start: float | None = None
    last: float = 0.0
    failures: int = 0
    sources: dict[str, int] = field(default_factory=dict)
    samples: list[Logon] = field(default_factory=list)


@dataclass
class State:
    """Per (service, account)."""

    accounts: dict[tuple[str, str], Account] = field(default_factory=dict)
    events: int = 0
    prune_at: int = 4096


def detect(event: Logon, state: State, ctx: Context) -> list[Raised]:
    """The alert ``event`` raises or updates: a failure of a named account from an address."""
    cfg = ctx.config.distributed
    if event.ours or event.outcome != "failure" or event.user is None or event.ip is None:
        return []
    key = (event.service, event.user)
    acc = state.accounts.get(key)
    if acc is None:
        acc = state.accounts[key] = Account(Window(cfg.window))
    elif acc.start is not None and event.ts - acc.last > cfg.window:
        acc = state.accounts[key] = Account(acc.window)
    acc.window.add(event.ts, event.count, event.ip)
    state.events += 1
    if state.events >= state.prune_at:  # amortised: a sweep costs the table's size, made that often
        state.prune_at = state.events + max(4096, len(state.accounts))
        for k in [k for k, a in state.accounts.items() if (a.window.last() or 0) < event.ts - cfg.window]:
            del state.accounts[k]
    if acc.start is None:
        if acc.window.total < cfg.failures or acc.window.distinct() < cfg.sources:
            return []
        acc.start = acc.window.first()
        acc.failures = acc.window.total
        acc.sources = dict(acc.window.keys or {})
    else:
        acc.failures += event.count
        acc.sources[event.ip] = acc.sources.get(event.ip, 0) + event.count
        if len(acc.sources) > 1000:
            acc.sources = top(acc.sources, 100)
    acc.last = event.ts
    if len(acc.samples) < SAMPLES:
        acc.samples.append(event)
    assert acc.start is not None
    target = {"kind": "user", "user": event.user, "service": event.service}
    episode = acc

    def make() -> Alert:
        assert episode.start is not None and event.user is not None
        user = readable(event.user)
        title = (f"Distributed brute force against {event.service} account {user}: {episode.failures} failed "
                 f"attempts from {len(episode.sources)} sources")
        evidence = {"service": event.service, "user": event.user, "failures": episode.failures,
                    "sources": len(episode.sources), "top_sources": top(episode.sources), "window_seconds": cfg.window,
                    "first": iso(episode.start), "last": iso(episode.last),
                    "samples": [s.sample() for s in episode.samples]}
        remediation = Remediation.by_hand(
            f"Protect the {event.service} account {user}: it is being guessed from many addresses at once.",
            "Blocking one source does not stop a botnet; only you know how this account must log in: allow keys "
            f"only (sshd: `PasswordAuthentication no`, or a `Match User {user}` block), or give it a long random "
            "password, or disable it if nobody uses it.")
        return alert(DETECTOR, title, target, event, evidence, remediation)

    return [Raised(DETECTOR, target, acc.start, acc.last, cfg.window, make)]
