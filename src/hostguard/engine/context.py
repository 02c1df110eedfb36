"""What a check receives: the facts it declared, the config, a deadline, progress and cancellation."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from hostguard.config import Config
from hostguard.engine.facts import Fact, Facts
from hostguard.engine.registry import CheckSpec
from hostguard.findings import Finding, Severity, Skipped, SkipReason
from hostguard.remediation import Remediation

ProgressFn = Callable[[str, int, int], None]
T = TypeVar("T")


class Context:
    """Per-check view of the scan. Checks build findings and extra skipped entries through it."""

    def __init__(self, spec: CheckSpec, facts: Facts, progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None) -> None:
        self.spec = spec
        self._facts = facts
        self.config: Config = facts.config
        self.deadline: float | None = None
        self.start_budget()
        self._progress = progress
        self.cancel = cancel or threading.Event()
        self.skipped: list[Skipped] = []

    def fact(self, fact: Fact[T]) -> T:
        """A fact the check declared in ``needs``."""
        if fact not in self.spec.needs:
            raise KeyError(f"{self.spec.id} reads fact {fact.name!r} without declaring it in needs")
        return self._facts.get(fact)

    def start_budget(self) -> float | None:
        """(Re)start the check's time budget now and return the deadline (None: the check has no budget).

        The engine starts it once the check's facts are collected; a check whose own preparation is
        long (planning guesses) starts it again when the work the budget is for begins.
        """
        seconds = self.spec.deadline_seconds(self.config)
        self.deadline = None if seconds is None else time.monotonic() + seconds
        return self.deadline

    def time_left(self) -> float:
        """Seconds until the deadline (infinite without one)."""
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def progress(self, done: int, total: int) -> None:
        """Report progress of a long check (drawn as a bar on a terminal)."""
        if self._progress is not None:
            self._progress(self.spec.id, done, total)

    def finding(self, title: str, target: Mapping[str, Any], *, evidence: Mapping[str, Any] | None = None,
                remediation: Remediation | str = "", severity: Severity | str | None = None) -> Finding:
        """A finding of the current check (its id, family and default severity filled in)."""
        if isinstance(remediation, str):
            remediation = Remediation(remediation)
        return Finding(id=self.spec.id, category=self.spec.family,
                       severity=Severity(severity) if severity else self.spec.severity,
                       title=title, target=dict(target), evidence=dict(evidence or {}), remediation=remediation)

    def skip(self, reason: SkipReason, detail: str, item: str = "") -> None:
        """Record that part of this check could not be done (e.g. one account's hash scheme)."""
        self.skipped.append(Skipped(self.spec.family, self.spec.id, reason, detail, item))
