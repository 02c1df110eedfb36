"""What every detector shares: the event it is fed, the context, the alert it raises and sliding windows.

A detector is a module with a ``State`` (its windows: what it must remember between events) and
``detect(event, state, ctx) -> list[Raised]``. The loop lives outside (:mod:`hostguard.detect.runner`): the
``logons ingest`` command replays stored events through it and the ``follow`` daemon will feed one event at a
time, so both run the same code. Detectors never read the store, print or act: they return alerts.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from hostguard.data import load_toml
from hostguard.detect.config import DetectConfig
from hostguard.findings import Alert, Severity
from hostguard.remediation import Remediation

SAMPLES = 5  # sample lines kept per alert: enough to find the attack in the log, bounded under a flood


@dataclass(frozen=True, slots=True)
class Logon:
    """One stored logon event as detectors see it: the ``logons parse`` fields plus ``ts`` (epoch seconds:
    the event's time, or when it was stored when the line had none), ``ours`` (hostguard's own probe) and
    ``new`` (stored by the run being analysed: only new events teach the baseline)."""

    file: str
    line: int
    service: str
    outcome: str
    count: int
    user: str | None
    ip: str | None
    port: int | None
    method: str | None
    time: str | None
    ts: float
    ours: bool = False
    new: bool = True

    def to_event(self) -> dict[str, Any]:
        """The ``logons parse`` contract object of this event (an alert's ``event``)."""
        return {"file": self.file, "line": self.line, "service": self.service, "outcome": self.outcome,
                "count": self.count, "user": self.user, "ip": self.ip, "port": self.port, "method": self.method,
                "time": self.time}

    def sample(self) -> dict[str, Any]:
        """The short form an alert's evidence lists: where it was logged and what it was."""
        return {"at": f"{self.file}:{self.line}", "time": self.time, "outcome": self.outcome, "user": self.user,
                "ip": self.ip, "service": self.service}


class Raised:
    """An alert of one episode: its detector and target (the fingerprint's parts), the span of the episode
    (epoch seconds) and the window that separates episodes. The alert itself is built when first asked for:
    a detector re-raises its episode on every event of a flood, and the runner keeps only the latest, so
    evidence is not assembled a million times (the daemon asks at once and gets it as of now)."""

    __slots__ = ("detector", "target", "first_ts", "last_ts", "window", "_make", "_alert")

    def __init__(self, detector: str, target: Mapping[str, Any], first_ts: float, last_ts: float, window: float,
                 make: Callable[[], Alert]) -> None:
        self.detector, self.target, self.first_ts, self.last_ts, self.window = (detector, target, first_ts, last_ts,
                                                                                window)
        self._make: Callable[[], Alert] | None = make
        self._alert: Alert | None = None

    @property
    def alert(self) -> Alert:
        """The alert (built once)."""
        if self._alert is None:
            assert self._make is not None
            self._alert, self._make = self._make(), None
        return self._alert

    def episode(self) -> tuple[str, str, float]:
        """What identifies the episode: detector, canonical target, start."""
        return self.detector, repr(sorted(self.target.items())), self.first_ts

    def __repr__(self) -> str:
        return f"Raised({self.detector}, {dict(self.target)}, {self.first_ts}..{self.last_ts})"


@dataclass
class Context:
    """What a detector may use besides its state: the config, the country lookup (injectable: tests answer
    for documentation addresses) and the alerts earlier detectors raised for this same event."""

    config: DetectConfig
    country: Callable[[str], str | None]
    raised: list[Raised] = field(default_factory=list)


@dataclass(frozen=True)
class Spec:
    """A detector's record from data/detect/detectors.toml."""

    id: str
    severity: Severity
    category: str
    summary: str
    tags: tuple[str, ...]


@cache
def specs() -> Mapping[str, Spec]:
    """Every detector's record, by id."""
    data = load_toml("detect/detectors.toml")["detector"]
    return {key: Spec(key, Severity(v["severity"]), v["category"], v["summary"], tuple(v.get("tags", ())))
            for key, v in data.items()}


def alert(detector: str, title: str, target: Mapping[str, Any], event: Logon, evidence: Mapping[str, Any],
          remediation: Remediation) -> Alert:
    """An alert of ``detector`` raised by ``event``, with the detector's recorded severity and category."""
    spec = specs()[detector]
    return Alert(detector, spec.category, spec.severity, title, target, evidence, remediation, event.time,
                 event.to_event())


def iso(ts: float) -> str:
    """Epoch seconds as ISO 8601 in UTC (evidence times the events themselves do not carry)."""
    return datetime.fromtimestamp(ts, UTC).isoformat()


def source_network(ip: str, ipv6_prefix: int) -> str:
    """The group a source address belongs to: itself for IPv4, its ``/ipv6_prefix`` network for IPv6
    (written as a network only when the prefix is shorter than 128)."""
    if ":" not in ip:
        return ip
    if ipv6_prefix >= 128:
        return ip
    return str(ipaddress.ip_network(f"{ip}/{ipv6_prefix}", strict=False))


def duration_text(seconds: int) -> str:
    """Seconds in the ``hostguard block --for`` syntax (``90m`` -> ``1h30m``)."""
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"


class Window:
    """A sliding window of ``(ts, count, key)`` entries: the sum of counts and the distinct keys (sources of
    an account) within ``span`` seconds of the newest entry, in O(1) amortised per event. A list with a head
    index rather than a deque: most sources send one or two attempts, and an empty deque costs 600 bytes."""

    __slots__ = ("span", "items", "head", "total", "keys")

    def __init__(self, span: float) -> None:
        self.span = span
        self.items: list[tuple[float, int, str | None]] = []
        self.head = 0
        self.total = 0
        self.keys: dict[str, int] | None = None  # made on the first keyed entry

    def __len__(self) -> int:
        return len(self.items) - self.head

    def add(self, ts: float, count: int, key: str | None = None) -> None:
        """Add an entry at ``ts`` and drop the ones older than ``ts - span``."""
        self.expire(ts)
        self.items.append((ts, count, key))
        self.total += count
        if key is not None:
            if self.keys is None:
                self.keys = {}
            self.keys[key] = self.keys.get(key, 0) + count

    def expire(self, now: float) -> None:
        """Drop entries older than ``now - span``."""
        items, head, limit = self.items, self.head, now - self.span
        while head < len(items) and items[head][0] < limit:
            _, count, key = items[head]
            head += 1
            self.total -= count
            if key is not None and self.keys is not None:
                left = self.keys[key] - count
                if left:
                    self.keys[key] = left
                else:
                    del self.keys[key]
        if head and head * 2 >= len(items):
            del items[:head]
            head = 0
        self.head = head

    def distinct(self) -> int:
        """How many distinct keys are in the window."""
        return len(self.keys) if self.keys else 0

    def first(self) -> float | None:
        """The oldest entry's time."""
        return self.items[self.head][0] if self.head < len(self.items) else None

    def last(self) -> float | None:
        """The newest entry's time."""
        return self.items[-1][0] if self.head < len(self.items) else None


def top(counts: Mapping[str, int], n: int = 10) -> dict[str, int]:
    """The ``n`` largest counts, largest first (ties by name): evidence stays bounded under a flood."""
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n])
