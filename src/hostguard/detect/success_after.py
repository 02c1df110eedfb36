"""Success after brute force: a successful logon that follows repeated failures — the guess that worked.

Two ways to be "just failed repeatedly", both within ``window`` before the success:

* *the source*: the succeeding address (IPv6: its /64, as brute force groups it) had at least ``failures``
  failed attempts, whatever account and method they tried;
* *the account*: the account (per service) had at least ``failures`` failures from at least
  ``account_sources`` distinct sources (a distributed brute force), and the success used a guessable method
  (a password, keyboard-interactive, SASL). A key logon by the owner while a botnet sprays the account's
  password is not its consequence; and a few failures from one other address (the owner's typos) never
  make an account "brute-forced".

Probes are not failures here: a scanner that knocked is not an attacker who tried passwords. The alert is
critical, and a success that raised it is never learned into the baseline (:mod:`.baseline` reads
``ctx.raised``). The remediation is by hand: only the owner knows whether the logon was theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from hostguard.detect.base import SAMPLES, Context, Logon, Raised, Window, alert, iso, source_network
from hostguard.findings import readable
from hostguard.remediation import Remediation

DETECTOR = "logon.success_after_brute_force"
K = TypeVar("K")
KEYLESS = ("publickey", "hostbased", "gssapi-with-mic", "gssapi-keyex")  # methods a password guess cannot pass


@dataclass
class Recent:
    """The failures of one source or one account within the window, with a few samples."""

    window: Window
    samples: list[dict[str, object]] = field(default_factory=list)


@dataclass
class State:
    """Failures per source network and per (service, account)."""

    sources: dict[str, Recent] = field(default_factory=dict)
    accounts: dict[tuple[str, str], Recent] = field(default_factory=dict)
    events: int = 0
    prune_at: int = 4096


def detect(event: Logon, state: State, ctx: Context) -> list[Raised]:
    """A failure is remembered; a success is checked against what its source and account just did."""
    cfg = ctx.config.success_after
    if event.ours:
        return []
    source = source_network(event.ip, ctx.config.brute_force.ipv6_prefix) if event.ip else None
    account = (event.service, event.user) if event.user is not None else None
    if event.outcome == "failure":
        if source is not None:
            _remember(state.sources, source, event, cfg.window, None)
        if account is not None and event.ip is not None:
            _remember(state.accounts, account, event, cfg.window, event.ip)
        state.events += 1
        if state.events >= state.prune_at:  # amortised: a sweep costs the table's size, made that often
            state.prune_at = state.events + max(4096, len(state.sources) + len(state.accounts))
            _prune(state, event.ts, cfg.window)
        return []
    if event.outcome != "success":
        return []
    reasons: list[str] = []
    samples: list[dict[str, object]] = []
    first = event.ts
    failures = 0
    sources = 0
    by_source = state.sources.get(source) if source is not None else None
    if by_source is not None:
        by_source.window.expire(event.ts)
        if by_source.window.total >= cfg.failures:
            reasons.append("source")
            failures = by_source.window.total
            first = min(first, by_source.window.first() or event.ts)
            samples += by_source.samples
    by_account = state.accounts.get(account) if account is not None else None
    if by_account is not None and event.method not in KEYLESS:
        by_account.window.expire(event.ts)
        if by_account.window.total >= cfg.failures and by_account.window.distinct() >= cfg.account_sources:
            reasons.append("account")
            failures = max(failures, by_account.window.total)
            sources = by_account.window.distinct()
            first = min(first, by_account.window.first() or event.ts)
            samples += [s for s in by_account.samples if s not in samples]
    if not reasons:
        return []
    user = readable(event.user) if event.user is not None else "(unknown account)"
    where = f"from {event.ip}" if event.ip else "locally"
    title = (f"Successful {event.service} logon of {user} {where} after {failures} failed attempts "
             f"({' and '.join(reasons)})")
    evidence = {"because": reasons, "failures": failures, "window_seconds": cfg.window, "first_failure": iso(first),
                "success": event.sample(), "samples": samples[:SAMPLES]}
    if sources:
        evidence["account_sources"] = sources
    block = f"`hostguard block {source}`, " if source is not None else ""
    remediation = Remediation.by_hand(
        f"Find out whether this {event.service} logon of {user} {where} was yours; if not, the account is "
        "compromised.",
        "Only you know whether you logged in. If it was not you: " + block +
        f"change the password (and keys) of {user}, end its sessions, and look at what it did (`last`, shell "
        "history, new SSH keys, cron jobs, new processes).")
    target = {"kind": "user", "user": event.user, "service": event.service, "address": source}
    made = alert(DETECTOR, title, target, event, evidence, remediation)
    return [Raised(DETECTOR, target, first, event.ts, cfg.window, lambda: made)]


def _remember(table: dict[K, Recent], key: K, event: Logon, span: int, by: str | None) -> None:
    recent = table.get(key)
    if recent is None:
        recent = table[key] = Recent(Window(span))
    recent.window.add(event.ts, event.count, by)
    if len(recent.window) == 1:
        recent.samples = []
    if len(recent.samples) < SAMPLES:
        recent.samples.append(event.sample())
    else:
        recent.samples = [*recent.samples[1:], event.sample()]


def _prune(state: State, now: float, span: int) -> None:
    """Forget sources and accounts quiet for a whole window: memory stays bounded by the active ones."""
    _drop(state.sources, now - span)
    _drop(state.accounts, now - span)


def _drop(table: dict[K, Recent], before: float) -> None:
    for key in [k for k, r in table.items() if (r.window.last() or 0) < before]:
        del table[key]
