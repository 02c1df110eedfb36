"""Generated event streams for the detector tests: documentation addresses, times from a fixed start."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from hostguard.detect.base import Logon, Raised
from hostguard.detect.baseline import State as BaselineState
from hostguard.detect.config import DetectConfig
from hostguard.detect.runner import Episodes, Pipeline

T0 = datetime(2024, 3, 4, 10, 0, 0, tzinfo=UTC).timestamp()
ATTACKER, OTHER, OWNER = "198.51.100.20", "198.51.100.21", "192.0.2.11"


def event(at: float, outcome: str = "failure", ip: str | None = ATTACKER, user: str | None = "root",
          service: str = "sshd", count: int = 1, method: str | None = "password", line: int = 0,
          new: bool = True, ours: bool = False) -> Logon:
    """An event ``at`` seconds after T0 (its ``time`` in UTC), logged at ``auth.log:line``."""
    ts = T0 + at
    return Logon("auth.log", line, service, outcome, count, user, ip, None, method,
                 datetime.fromtimestamp(ts, UTC).isoformat(), ts, ours, new)


def numbered(events: Iterable[Logon]) -> list[Logon]:
    """The events with lines 1, 2, ... in order."""
    return [dataclasses.replace(e, line=i) for i, e in enumerate(events, start=1)]


def failures(n: int, every: float = 1.0, start: float = 0.0, **kw: Any) -> list[Logon]:
    """``n`` failures ``every`` seconds apart."""
    return [event(start + i * every, **kw) for i in range(n)]


def configured(**sections: dict[str, Any]) -> DetectConfig:
    """The default config with some settings of its subsections replaced."""
    base = DetectConfig()
    changes = {name: dataclasses.replace(getattr(base, name), **values) for name, values in sections.items()}
    return dataclasses.replace(base, **changes)


def run(events: Iterable[Logon], config: DetectConfig | None = None,
        country: Callable[[str], str | None] | None = None,
        learned: BaselineState | None = None) -> list[Raised]:
    """Feed the events in order, one at a time (the loop the CLI and the daemon own); the latest alert of
    every episode."""
    pipeline = Pipeline(config or DetectConfig(), country or (lambda ip: None), learned)
    episodes = Episodes()
    for e in events:
        episodes.add(pipeline.feed(e))
    return episodes.alerts()


def ids(raised: Iterable[Raised]) -> list[tuple[str, dict[str, Any]]]:
    """Which alerts, on which target: what the tests assert."""
    return sorted(((r.alert.id, dict(r.alert.target)) for r in raised), key=repr)
