"""Unusual logons: a successful logon outside the host's approved baseline raises an alert naming why.

The baseline has four dimensions: the source IP (IPv6 per ``ipv6_prefix`` network: privacy addresses change
inside it), its country (offline lookup; private and loopback sources have none), the hour of day (in the
log's own time zone, which is the host's) and the account. It is learned during the *learning window*: the
first successful logon plus ``learning_hours``; a value seen in ``approve_after`` successes during that time
is approved. After the window, a success with any unapproved value raises ``logon.unusual`` naming the
dimension(s); values are approved from then on only by the owner (``hostguard logons baseline approve``), so
an attacker cannot teach the baseline by logging in often. A success that raised success-after-brute-force
is never learned (and not reported twice). Only the configured services count (interactive logons by
default: mail and database clients log in at all hours from everywhere).

Only events stored by the run being analysed (``new``) are learned or judged: replayed history already was.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from hostguard.detect.base import Context, Logon, Raised, alert, source_network
from hostguard.detect.config import BASELINE_DIMENSIONS
from hostguard.detect.geo import is_local
from hostguard.detect.success_after import DETECTOR as SUCCESS_AFTER
from hostguard.findings import readable
from hostguard.remediation import Remediation

DETECTOR = "logon.unusual"
LEARNED, MANUAL = "learned", "manual"


class BaselineError(ValueError):
    """A value the owner asked to approve is not valid for its dimension (one line)."""


@dataclass(frozen=True)
class Entry:
    """One baseline value: how many successes showed it, whether it is approved, and by whom."""

    dimension: str
    value: str
    seen: int
    approved: bool
    origin: str
    first_seen: str
    last_seen: str

    def to_dict(self) -> dict[str, object]:
        """The JSON form ``baseline list`` prints."""
        return {"dimension": self.dimension, "value": self.value, "seen": self.seen, "approved": self.approved,
                "origin": self.origin, "first_seen": self.first_seen, "last_seen": self.last_seen}


@dataclass
class State:
    """The baseline as loaded from the store, the learning window's start, and what changed (to save)."""

    entries: dict[tuple[str, str], Entry] = field(default_factory=dict)
    learning_start: float | None = None
    dirty: set[tuple[str, str]] = field(default_factory=set)
    start_changed: bool = False

    @classmethod
    def of(cls, entries: Iterable[Entry], learning_start: float | None) -> State:
        """The state of stored entries."""
        return cls({(e.dimension, e.value): e for e in entries}, learning_start)


def normalize(dimension: str, value: str) -> str:
    """The stored form of a value the owner gives: an IP or CIDR network, a two-letter country code, an hour
    or hour range (``8``, ``08-18``, ``22-6``), an account name; :class:`BaselineError` otherwise."""
    text = value.strip()
    if dimension == "ip":
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise BaselineError(f"ip {value!r}: not an IP address or network") from None
        if net.num_addresses == 1:
            return str(net.network_address)
        return str(net)
    if dimension == "country":
        if len(text) != 2 or not text.isascii() or not text.isalpha():
            raise BaselineError(f"country {value!r}: not a two-letter ISO 3166 code (DE, US, ...)")
        return text.upper()
    if dimension == "hour":
        parts = text.split("-")
        if len(parts) > 2 or not all(p.isdigit() and int(p) < 24 for p in parts):
            raise BaselineError(f"hour {value!r}: not an hour (0-23) or a range of hours (8-18, 22-6)")
        return "-".join(f"{int(p):02d}" for p in parts)
    if dimension == "account":
        if not text or any(c.isspace() for c in text):
            raise BaselineError(f"account {value!r}: not an account name")
        return text
    raise BaselineError(f"{dimension!r} is not a baseline dimension ({', '.join(BASELINE_DIMENSIONS)})")


def values_of(event: Logon, ctx: Context) -> dict[str, str]:
    """The event's value on each configured dimension it has (a local logon has no IP or country)."""
    cfg = ctx.config.baseline
    out: dict[str, str] = {}
    if event.ip is not None:
        out["ip"] = source_network(event.ip, ctx.config.brute_force.ipv6_prefix)
        code = None if is_local(event.ip) else ctx.country(event.ip)  # the rule holds for injected lookups too
        if code:
            out["country"] = code
    if event.time is not None:
        out["hour"] = event.time[11:13]
    if event.user is not None:
        out["account"] = readable(event.user)
    return {k: v for k, v in out.items() if k in cfg.dimensions}


def approved(state: State, dimension: str, value: str, hour_slack: int) -> bool:
    """Whether ``value`` is covered by an approved entry of ``dimension``."""
    entry = state.entries.get((dimension, value))
    if entry is not None and entry.approved:
        return True
    if dimension == "ip":
        try:
            addr = ipaddress.ip_network(value, strict=False)
        except ValueError:
            return False
        for (dim, text), e in state.entries.items():
            if dim == "ip" and e.approved and "/" in text:
                net = ipaddress.ip_network(text)
                if net.version == addr.version and addr.subnet_of(net):  # type: ignore[arg-type]
                    return True
        return False
    if dimension == "hour":
        hour = int(value)
        for (dim, text), e in state.entries.items():
            if dim != "hour" or not e.approved:
                continue
            low, _, high = text.partition("-")
            start, end = int(low), int(high or low)
            span = (end - start) % 24
            if (hour - start) % 24 <= span:
                return True
            if min((hour - start) % 24, (start - hour) % 24, (hour - end) % 24, (end - hour) % 24) <= hour_slack:
                return True
    return False


def detect(event: Logon, state: State, ctx: Context) -> list[Raised]:
    """Learn a new success during the learning window; after it, judge it against the baseline."""
    cfg = ctx.config.baseline
    if not event.new or event.ours or event.outcome != "success" or event.service not in cfg.services:
        return []
    if any(r.detector == SUCCESS_AFTER for r in ctx.raised):
        return []
    values = values_of(event, ctx)
    if state.learning_start is None:
        state.learning_start = event.ts
        state.start_changed = True
    if event.ts < state.learning_start + cfg.learning_hours * 3600:
        for dim, value in values.items():
            _learn(state, dim, value, event, cfg.approve_after)
        return []
    unusual = {dim: value for dim, value in values.items() if not approved(state, dim, value, cfg.hour_slack)}
    if not unusual:
        return []
    user = readable(event.user) if event.user is not None else "(unknown account)"
    where = f"from {event.ip}" if event.ip else "locally"
    named = ", ".join(f"new {dim} {value}" for dim, value in unusual.items())
    title = f"Unusual {event.service} logon of {user} {where}: {named}"
    commands = " and ".join(f"`hostguard logons baseline approve {dim} {value}`" for dim, value in unusual.items())
    remediation = Remediation.by_hand(
        f"Find out whether this logon of {user} {where} was yours or someone you trust.",
        f"Only you know who logged in. If it was you: {commands}. If not: change the password and keys of {user}, "
        "end its sessions and look at what it did (`last`, shell history, new SSH keys, cron jobs).")
    evidence = {"unusual": unusual, "values": values, "success": event.sample()}
    target = {"kind": "user", "user": event.user, "service": event.service,
              "address": values.get("ip") if "ip" in unusual or "country" in unusual else None,
              "dimensions": tuple(sorted(unusual))}
    made = alert(DETECTOR, title, target, event, evidence, remediation)
    return [Raised(DETECTOR, target, event.ts, event.ts, 0.0, lambda: made)]


def _learn(state: State, dim: str, value: str, event: Logon, approve_after: int) -> None:
    key = (dim, value)
    when = event.time or ""
    entry = state.entries.get(key)
    if entry is None:
        entry = Entry(dim, value, 0, False, LEARNED, when, when)
    seen = entry.seen + 1
    state.entries[key] = replace(entry, seen=seen, approved=entry.approved or seen >= approve_after,
                                 last_seen=when or entry.last_seen)
    state.dirty.add(key)
