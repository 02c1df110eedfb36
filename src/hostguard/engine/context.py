"""What a check receives: the facts it declared, the config, a deadline, progress and cancellation."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from hostguard.engine.facts import Facts
from hostguard.engine.registry import CheckSpec
from hostguard.findings import Finding, Severity, Skipped, SkipReason

ProgressFn = Callable[[str, int, int], None]


class Context:
    """Per-check view of the scan. Checks build findings and extra skipped entries through it."""

    def __init__(self, spec: CheckSpec, facts: Facts, config: dict[str, Any], deadline: float | None,
                 progress: ProgressFn | None, cancel: threading.Event) -> None:
        self.spec = spec
        self._facts = facts
        self.config = config
        self.deadline = deadline
        self._progress = progress
        self.cancel = cancel
        self.skipped: list[Skipped] = []

    @property
    def host_is_live(self) -> bool:
        """Whether the scanned host is this running machine."""
        return self._facts.host.live

    def fact(self, name: str) -> Any:
        """A fact the check declared in ``needs``."""
        if name not in self.spec.needs:
            raise KeyError(f"{self.spec.id} reads fact {name!r} without declaring it in needs")
        return self._facts.get(name)

    def time_left(self) -> float:
        """Seconds until the deadline (infinite without one)."""
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def progress(self, done: int, total: int) -> None:
        """Report progress of a long check (drawn as a bar on a terminal)."""
        if self._progress is not None:
            self._progress(self.spec.id, done, total)

    def finding(self, title: str, target: Mapping[str, Any], *, evidence: Mapping[str, Any] | None = None,
                remediation: str = "", severity: Severity | str | None = None) -> Finding:
        """A finding of the current check (its id, family and default severity filled in)."""
        return Finding(id=self.spec.id, category=self.spec.family,
                       severity=Severity(severity) if severity else self.spec.severity,
                       title=title, target=dict(target), evidence=dict(evidence or {}), remediation=remediation)

    def skip(self, reason: SkipReason, detail: str) -> None:
        """Record that part of this check could not be done (e.g. one account's hash scheme)."""
        self.skipped.append(Skipped(self.spec.family, self.spec.id, reason, detail))
