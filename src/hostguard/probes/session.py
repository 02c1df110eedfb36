"""One probe session per account: canary first, then the guesses in order, under a cap, a rate limit and the
service's lockout counter; recorded in state.db.

The rules (issue 10, "Never lock anyone out"):

* the **canary** is one long random password: accepted means the service checks no password for this account
  (trust, unix_socket, no ``requirepass``, skip-grant-tables) — reported as that, never as a weak password;
* **stop** at the first accepted guess, at a "locked" answer, and at any error (an error says nothing about the
  password, and retrying would only add failures to the account's counter);
* **cap**: at most ``Limits.per_account`` attempts (the canary included), and where the service blocks an
  account after N failures, at most ``N - 1 - lockout_margin`` failures *in all sessions recorded in the
  store* (the counter outlives a session), so real failures of the owner still fit below;
* **rate**: at most ``Limits.per_second`` attempts per second per service (one :class:`RateLimit` shared by
  the sessions of one service);
* a result and a record name the account, the outcome, the attempts and the matched guess's rank and source —
  never the password.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from hostguard.data import load_toml
from hostguard.passwords.guesses import Guess, plan
from hostguard.probes.base import Accepted, Error, Locked, Prober

if TYPE_CHECKING:
    from hostguard.store.state import StateStore

WEAK = "weak_password"
NO_PASSWORD = "no_password_checked"
NOT_FOUND = "not_found"
LOCKED = "locked"
ERROR = "error"
NOT_PROBED = "not_probed"
OUT_OF_TIME = "out_of_time"     # the scan's time budget ended before the guesses did


@dataclass(frozen=True)
class Limits:
    """How hard a session may try (the family's config section supplies these once it is wired)."""

    per_account: int = 50         # attempts per account and session, the canary included
    per_second: float = 5.0       # attempts per second per service
    lockout_margin: int = 1       # failures left unused below a service's lockout counter


class RateLimit:
    """At most ``per_second`` attempts per second: waits before an attempt that would come too soon."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self.interval = 1.0 / per_second
        self.clock, self.sleep = clock, sleep
        self.last: float | None = None

    def delay(self) -> float:
        """Seconds the next :meth:`wait` would block."""
        return 0.0 if self.last is None else max(0.0, self.interval - (self.clock() - self.last))

    def wait(self) -> None:
        """Block until the next attempt is allowed, and count it."""
        now = self.clock()
        if self.last is not None and now - self.last < self.interval:
            self.sleep(self.interval - (now - self.last))
            now = self.clock()
        self.last = now


@dataclass(frozen=True)
class ProbeResult:
    """What a session found for one account. No password: the guess's rank (1-based, in the list tried) and
    where it came from stand for it."""

    service: str
    endpoint: str
    account: str
    outcome: str                 # WEAK, NO_PASSWORD, NOT_FOUND, LOCKED, ERROR, NOT_PROBED, OUT_OF_TIME
    attempts: int                # attempts the server saw, the canary included
    rank: int | None = None
    source: str | None = None
    detail: str = ""


def allowed_attempts(prober: Prober, limits: Limits, earlier_failures: int = 0) -> int:
    """The session's cap: the configured one, lowered to stay ``lockout_margin`` failures below a lockout,
    counting the failures earlier sessions left on the account's counter."""
    cap = limits.per_account
    if prober.lockout_limit is not None:
        cap = min(cap, prober.lockout_limit - 1 - limits.lockout_margin - earlier_failures)
    return max(cap, 0)


def earlier_failures(store: StateStore, host_key: str, service: str, account: str) -> int:
    """Failed attempts recorded by earlier sessions against this account.

    A lockout counter (MariaDB's ``max_password_errors``) survives between sessions and is reset only by a
    good login or FLUSH PRIVILEGES, neither of which we can see: every failure we ever caused is assumed to
    be still on it. A session that ended accepted (weak, no password) reset it. Counted per service and
    account, whatever the endpoint: the socket and loopback TCP reach the same counter.
    """
    total = 0
    for probe in store.probes(host_key):
        if probe.service != service or probe.account != account:
            continue
        total = 0 if probe.outcome in (WEAK, NO_PASSWORD) else total + probe.attempts
    return total


def canary() -> str:
    """A password no one has: 256 random bits."""
    return secrets.token_urlsafe(32)


def probe_account(prober: Prober, account: str, guesses: Sequence[Guess], limits: Limits = Limits(), *,
                  rate: RateLimit | None = None, store: StateStore | None = None, host_key: str = "",
                  now: Callable[[], datetime] = lambda: datetime.now(UTC), deadline: float | None = None,
                  attempted: Callable[[], None] | None = None) -> ProbeResult:
    """Canary, then ``guesses`` in order, within the limits; recorded in ``store`` when given.

    ``deadline`` (a :func:`time.monotonic` value) ends the session between two attempts, as OUT_OF_TIME;
    ``attempted`` is called after each attempt (a progress bar)."""
    started = now().isoformat(timespec="seconds")
    rate = rate or RateLimit(limits.per_second)
    earlier = (earlier_failures(store, host_key, prober.service, account)
               if store is not None and prober.lockout_limit is not None else 0)
    cap = allowed_attempts(prober, limits, earlier)
    endpoint = prober.endpoint.label()

    def done(outcome: str, attempts: int, rank: int | None = None, source: str | None = None,
             detail: str = "") -> ProbeResult:
        result = ProbeResult(prober.service, endpoint, account, outcome, attempts, rank, source, detail)
        if store is not None:
            from hostguard.store.state import RecordedProbe

            store.record_probe(host_key, RecordedProbe(prober.service, endpoint, account, started, attempts,
                                                       outcome, rank, now().isoformat(timespec="seconds")))
        return result

    if cap < 1:
        return done(NOT_PROBED, 0, detail=f"the lockout limit ({prober.lockout_limit}) leaves no attempt to spare "
                                          f"({earlier} failed attempts recorded by earlier probes)")
    rate.wait()
    answer = prober.try_password(account, canary())
    if attempted is not None:
        attempted()
    if isinstance(answer, Accepted):
        return done(NO_PASSWORD, 1, detail="a long random password was accepted: no password is checked")
    if isinstance(answer, Locked):
        return done(LOCKED, 1, detail=answer.detail)
    if isinstance(answer, Error):
        return done(ERROR, 1, detail=answer.detail)
    attempts = 1
    for rank, guess in enumerate(guesses, 1):
        if attempts >= cap:
            return done(NOT_FOUND, attempts, detail=f"stopped at the cap of {cap} attempts")
        if deadline is not None and time.monotonic() + rate.delay() >= deadline:
            return done(OUT_OF_TIME, attempts, detail=f"the time budget ended after {attempts} attempts")
        rate.wait()
        answer = prober.try_password(account, guess.text)
        attempts += 1
        if attempted is not None:
            attempted()
        if isinstance(answer, Accepted):
            return done(WEAK, attempts, rank, guess.source)
        if isinstance(answer, Locked):
            return done(LOCKED, attempts, detail=answer.detail)
        if isinstance(answer, Error):
            return done(ERROR, attempts, detail=answer.detail)
    return done(NOT_FOUND, attempts, detail="every guess was refused")


def service_defaults(service: str, account: str) -> list[Guess]:
    """The default and customary credentials kept as data for this service and account."""
    out: list[Guess] = []
    for entry in load_toml("weak_passwords/service_defaults.toml")["credentials"]:
        if entry["service"] in (service, "*") and entry["user"] in (account, "*"):
            out.append(Guess(str(entry["password"]), f"a default credential of {service}"))
    return out


def service_guesses(service: str, account: str, hostname: str = "", extra_words: Iterable[str] = (),
                    floor: int = 100, wordlist: Iterable[str] = ()) -> list[Guess]:
    """What to try, in order: the service's defaults, empty, the service's and account's names and their
    variants, then issue 2's plan (host name, site words, common passwords by rank).

    Anonymous FTP takes any password when it is on, so it gets none: its canary is the whole answer.
    """
    from hostguard.probes.ftp import ANONYMOUS

    if service == "ftp" and account in ANONYMOUS:
        return []
    first, rest = plan(account, "", hostname, [service, *extra_words], floor, wordlist)
    ordered = [*service_defaults(service, account), Guess("", "an empty password"), *first, *rest]
    seen: set[str] = set()
    out: list[Guess] = []
    for guess in ordered:
        if guess.text not in seen:
            seen.add(guess.text)
            out.append(guess)
    return out
