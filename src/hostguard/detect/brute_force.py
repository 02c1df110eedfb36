"""Brute force from one source: many failed attempts from one address (IPv6: one /64) in a window.

Two rules on the same events, grouped by source: *fast* (``fast_failures`` in ``fast_window``: a bot at full
speed) and *slow* (``slow_failures`` in ``slow_window``: a bot pacing itself under the fast threshold, the way
fail2ban's default 10 minutes is evaded). Failures count with their ``count`` (a ``message repeated 5 times``
line is five); pre-authentication probes count too (``count_probes``): a source knocking a thousand times is
the same attacker whether or not it got to send a password. Events without an address (local su/sudo) have
no source. An episode is one alert: once the threshold is crossed, later failures of the same source update
it until the source has been quiet for a whole window. The slow rule stays quiet for a source the fast rule
already reported within the slow window. The remediation is the ``block`` action for the source.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hostguard.detect.base import SAMPLES, Context, Logon, Raised, Window, alert, duration_text, iso, source_network, top
from hostguard.detect.config import BruteForceConfig
from hostguard.findings import Alert
from hostguard.remediation import Action, Remediation

FAST, SLOW = "logon.brute_force", "logon.brute_force_slow"


@dataclass(slots=True)
class Episode:
    """One source's window for one rule, and the episode under way once its threshold was crossed (a new
    object per episode: an alert built later still describes its own episode)."""

    window: Window
    start: float | None = None      # the episode's first failure (None: no episode under way)
    last: float = 0.0
    failures: int = 0
    users: dict[str, int] = field(default_factory=dict)
    services: set[str] = field(default_factory=set)
    samples: list[Logon] = field(default_factory=list)


@dataclass
class State:
    """Per source network: the fast and slow windows and episodes, and when the fast rule last fired."""

    fast: dict[str, Episode] = field(default_factory=dict)
    slow: dict[str, Episode] = field(default_factory=dict)
    fast_fired: dict[str, float] = field(default_factory=dict)
    events: int = 0
    prune_at: int = 4096


def detect(event: Logon, state: State, ctx: Context) -> list[Raised]:
    """The brute-force alerts ``event`` raises or updates (empty for successes, own probes, local events)."""
    cfg = ctx.config.brute_force
    if event.ours or event.ip is None or event.outcome == "success":
        return []
    if event.outcome == "probe" and not cfg.count_probes:
        return []
    source = source_network(event.ip, cfg.ipv6_prefix)
    out: list[Raised] = []
    fast = _step(state.fast, source, event, cfg.fast_window, cfg.fast_failures)
    if fast is not None:
        state.fast_fired[source] = event.ts
        out.append(_raise(FAST, source, fast, event, cfg.fast_window, cfg.block_for))
    slow = _step(state.slow, source, event, cfg.slow_window, cfg.slow_failures)
    fired = state.fast_fired.get(source)
    if slow is not None and (fired is None or event.ts - fired > cfg.slow_window):
        out.append(_raise(SLOW, source, slow, event, cfg.slow_window, cfg.block_for))
    state.events += 1
    if state.events >= state.prune_at:  # amortised: a sweep costs the table's size, made that often
        state.prune_at = state.events + max(4096, len(state.fast) + len(state.slow))
        _prune(state, event.ts, cfg)
    return out


def _step(episodes: dict[str, Episode], source: str, event: Logon, span: int, threshold: int) -> Episode | None:
    """Add the event to the source's window; the episode when it is (still) at or over the threshold."""
    ep = episodes.get(source)
    if ep is None:
        ep = episodes[source] = Episode(Window(span))
    elif ep.start is not None and event.ts - ep.last > span:  # quiet for a whole window: the episode is over
        ep = episodes[source] = Episode(ep.window)
    ep.window.add(event.ts, event.count)
    if ep.start is None:
        if len(ep.window) == 1 and (ep.users or ep.samples):  # the window had emptied: start afresh
            ep = episodes[source] = Episode(ep.window)
        oldest = ep.window.first() or event.ts
        if ep.samples and ep.samples[0].ts < oldest:
            ep.samples = [s for s in ep.samples if s.ts >= oldest]  # samples still inside the window
        _tally(ep, event)
        if ep.window.total < threshold:
            return None
        ep.start = oldest
        ep.failures = ep.window.total
        ep.last = event.ts
        return ep
    ep.failures += event.count
    ep.last = event.ts
    _tally(ep, event)
    return ep


def _tally(ep: Episode, event: Logon) -> None:
    if event.user is not None:
        ep.users[event.user] = ep.users.get(event.user, 0) + event.count
        if len(ep.users) > 1000:  # a flood of random names must not grow memory: keep the top ones
            ep.users = top(ep.users, 100)
    ep.services.add(event.service)
    if len(ep.samples) < SAMPLES:
        ep.samples.append(event)


def _raise(detector: str, source: str, ep: Episode, event: Logon, span: int, block_for: int) -> Raised:
    assert ep.start is not None
    target = {"kind": "ip", "address": source}

    def make() -> Alert:
        assert ep.start is not None
        minutes = f"{span // 60} min" if span < 7200 else f"{span // 3600} h"
        title = f"Brute force from {source}: {ep.failures} failed attempts (threshold in {minutes})"
        evidence = {"rule": "fast" if detector == FAST else "slow", "source": source, "failures": ep.failures,
                    "window_seconds": span, "first": iso(ep.start), "last": iso(ep.last), "users": top(ep.users),
                    "services": sorted(ep.services), "samples": [s.sample() for s in ep.samples]}
        duration = duration_text(block_for)
        remediation = Remediation(
            f"Block {source} for {duration}: it is guessing passwords (hostguard never blocks approved baseline "
            "addresses, current SSH peers or this machine's own addresses).",
            steps=(Action("block", (("target", source), ("for", duration), ("reason", detector))),))
        return alert(detector, title, target, event, evidence, remediation)

    return Raised(detector, target, ep.start, ep.last, span, make)


def _prune(state: State, now: float, cfg: BruteForceConfig) -> None:
    """Forget sources quiet for longer than each rule's window (an episode ends after a quiet window anyway):
    memory stays bounded by the sources active within the windows."""
    for episodes, span in ((state.fast, cfg.fast_window), (state.slow, cfg.slow_window)):
        for key in [k for k, ep in episodes.items() if (ep.window.last() or 0) < now - span]:
            del episodes[key]
    for key in [k for k, ts in state.fast_fired.items() if ts < now - cfg.slow_window]:
        del state.fast_fired[key]
