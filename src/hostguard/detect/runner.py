"""One step of the detector loop: an event through every logon detector, in order.

The order matters once: the unusual-logon detector looks at what success-after-brute-force raised for the
same event (such a success is never learned). :class:`Pipeline` keeps each detector's state; the caller owns
the loop (``logons ingest`` replays the store's events around the new ones, rebuilding the windows; the
``follow`` daemon will feed lines as they come). :class:`Episodes` keeps, per alert fingerprint and episode,
only the latest (most complete) alert, since a detector re-raises its alert with updated evidence on each
event of an episode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from hostguard.detect import baseline, brute_force, distributed, success_after
from hostguard.detect.base import Context, Logon, Raised
from hostguard.detect.config import DetectConfig

DETECTORS: tuple[ModuleType, ...] = (brute_force, distributed, success_after, baseline)


class Pipeline:
    """The detectors' states, and the step that feeds them one event."""

    def __init__(self, config: DetectConfig, country: Callable[[str], str | None],
                 learned: baseline.State | None = None) -> None:
        self.config = config
        self.country = country
        self.states: dict[str, Any] = {m.__name__: m.State() for m in DETECTORS}
        if learned is not None:
            self.states[baseline.__name__] = learned

    @property
    def baseline(self) -> baseline.State:
        """The baseline state (the caller saves what changed)."""
        state: baseline.State = self.states[baseline.__name__]
        return state

    def feed(self, event: Logon) -> list[Raised]:
        """The alerts ``event`` raises or updates."""
        ctx = Context(self.config, self.country)
        for module in DETECTORS:
            ctx.raised += module.detect(event, self.states[module.__name__], ctx)
        return ctx.raised


class Episodes:
    """The latest alert of each (fingerprint, episode start), in the order episodes began."""

    def __init__(self) -> None:
        self.latest: dict[tuple[str, str, float], Raised] = {}

    def add(self, raised: Iterable[Raised]) -> None:
        """Keep these alerts, each replacing an earlier one of its episode."""
        for r in raised:
            self.latest[r.episode()] = r

    def alerts(self) -> list[Raised]:
        """Every episode's latest alert."""
        return list(self.latest.values())
