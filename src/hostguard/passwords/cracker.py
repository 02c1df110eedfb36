"""Trying guesses against many hashes on every core, sharing a time budget between accounts by time.

Every account first gets its guaranteed guesses (the most common passwords and those derived from its
names) whatever the budget. The time left until the deadline is then shared by *time*, not by count:
the next batch of guesses always goes to the account that has spent the least hashing time beyond its
floor. A SHA-512 hash (about 1.5 ms a guess here) thus gets some fifteen times the guesses of a
yescrypt one (about 25 ms), where round-robin gave both the same few; an account whose password is
found, or whose guesses run out, stops spending, so the time it leaves goes to the others.

Batches are sized from an account's measured cost per guess to take about :data:`SLICE` seconds: cheap
hashes do not pay a thread hand-off every few guesses, and the shares stay even to within one batch.
A worker checks the deadline before each guess, so the budget is overrun by one guess at most.

A target may resume a list an earlier scan began (``earlier`` guesses already failed): its ``first`` and
``rest`` are then what is left of the list, and :attr:`Target.reached` says how far down the whole list
this scan got without a gap, which is what the next scan may skip. With several workers a batch stopped
by the deadline can leave a hole before a later batch's guesses: those are tried again next time.
Hashing runs in threads: libxcrypt releases the GIL, so every core works. The clock is a parameter so
tests can give guesses a cost they control.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from hostguard.passwords.guesses import Guess
from hostguard.passwords.verifiers import Verifier

CHUNK = 16  # guesses per batch of the guaranteed floor (tried whatever the time, so size is only overhead)
SLICE = 0.05  # seconds of hashing per batch beyond the floor: the grain of the fair share
FIRST_BATCH = 4  # guesses in a batch while an account's cost per guess is still unknown
MAX_BATCH = 4096

Clock = Callable[[], float]


@dataclass
class Target:
    """One hash to attack, with its planned guesses and what happened."""

    account: str
    hashed: str
    first: Sequence[Guess]
    rest: Sequence[Guess]
    earlier: int = 0  # guesses of the list tried by earlier scans (before ``first``), not tried again
    tried: int = 0  # guesses tried in this run
    found: Guess | None = None
    budget_ran_out: bool = False
    spent: float = 0.0  # seconds of hashing beyond the floor: this account's use of the shared budget
    hashing: float = 0.0  # seconds of hashing in all, floor included: gives its cost per guess
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _ranges: list[tuple[int, int]] = field(default_factory=list, repr=False)  # (offset, count) tried here

    @property
    def planned(self) -> int:
        """Every guess this account could get in this run."""
        return len(self.first) + len(self.rest)

    @property
    def list_size(self) -> int:
        """The whole list, earlier scans' part included."""
        return self.earlier + self.planned

    @property
    def tried_in_all(self) -> int:
        """Guesses tried against this hash, this run and earlier ones together."""
        return self.earlier + self.tried

    @property
    def reached(self) -> int:
        """How far down the whole list every guess has been tried without a match: where the next run may
        resume. A found password stops it at ``earlier``, so no position ever points at the password."""
        if self.found is not None:
            return self.earlier
        with self._lock:
            ranges = sorted(self._ranges)
        done = 0
        for offset, count in ranges:
            if offset > done:
                break
            done = max(done, offset + count)
        return self.earlier + done

    @classmethod
    def resuming(cls, account: str, hashed: str, first: Sequence[Guess], rest: Sequence[Guess],
                 earlier: int) -> Target:
        """The target for a list (``first`` + ``rest``) whose first ``earlier`` guesses failed in earlier runs.

        The guaranteed part is a minimum per run: the next ``len(first)`` guesses not yet tried are tried
        whatever the budget, so every scan moves an account on by at least that many, and a re-scan costs
        what the first scan did instead of trying the same most-common passwords against the same hash.
        """
        whole = [*first, *rest]
        earlier = max(0, min(earlier, len(whole)))
        guaranteed = earlier + len(first)
        return cls(account, hashed, whole[earlier:guaranteed], whole[guaranteed:], earlier)

    def cost(self) -> float | None:
        """Measured seconds per guess, None before the first guess."""
        with self._lock:
            return self.hashing / self.tried if self.tried else None


@dataclass(frozen=True)
class _Batch:
    index: int  # which target
    offset: int  # where its first guess is in the target's ``first`` + ``rest``
    guesses: Sequence[Guess]
    floor: bool
    reserved: float  # the seconds it is expected to take, counted against its target while in flight


class _Scheduler:
    """Hands out batches: the floor of every account in order, then the account with the least time used."""

    def __init__(self, targets: Sequence[Target], deadline: float, clock: Clock, cancel: threading.Event) -> None:
        self.targets = targets
        self.deadline = deadline
        self.clock = clock
        self.cancel = cancel
        self.floor: deque[_Batch] = deque(_Batch(i, k, t.first[k:k + CHUNK], True, 0.0)
                                          for i, t in enumerate(targets) for k in range(0, len(t.first), CHUNK))
        self.next_rest = [0] * len(targets)  # index into each target's ``rest`` of its next guess to hand out
        self.reserved = [0.0] * len(targets)
        self.in_flight = [0] * len(targets)

    def take(self) -> _Batch | None:
        """The next batch to run, or None when there is nothing to start now."""
        if self.cancel.is_set():
            return None
        while self.floor:
            batch = self.floor.popleft()
            if self.targets[batch.index].found is None:
                return self._start(batch)
        if self.clock() > self.deadline:
            return None
        best: tuple[float, int, float | None] | None = None
        for i, t in enumerate(self.targets):
            if t.found is not None or self.next_rest[i] >= len(t.rest):
                continue
            cost = t.cost()
            if cost is None and self.in_flight[i]:
                continue  # its first batch will tell what a guess costs
            with t._lock:
                used = t.spent + self.reserved[i]
            if best is None or used < best[0]:
                best = (used, i, cost)
        if best is None:
            return None
        _, i, cost = best
        size = FIRST_BATCH if cost is None else max(1, min(MAX_BATCH, int(SLICE / cost) if cost > 0 else MAX_BATCH))
        start = self.next_rest[i]
        guesses = self.targets[i].rest[start:start + size]
        self.next_rest[i] = start + len(guesses)
        return self._start(_Batch(i, len(self.targets[i].first) + start, guesses, False, len(guesses) * (cost or 0.0)))

    def _start(self, batch: _Batch) -> _Batch:
        self.reserved[batch.index] += batch.reserved
        self.in_flight[batch.index] += 1
        return batch

    def finish(self, batch: _Batch) -> None:
        """A batch is done: its real time is in its target's ``spent`` now, not its reservation."""
        self.reserved[batch.index] -= batch.reserved
        self.in_flight[batch.index] -= 1


def crack(targets: Sequence[Target], verifier: Verifier, *, deadline: float, workers: int,
          progress: Callable[[int, int], None] | None = None, cancel: threading.Event | None = None,
          clock: Clock = time.monotonic) -> None:
    """Fill in ``found``, ``tried``, ``spent`` and ``budget_ran_out`` of every target.

    ``deadline`` is a reading of ``clock``: no guess beyond an account's floor starts after it.
    """
    cancel = cancel or threading.Event()
    workers = max(1, workers)
    scheduler = _Scheduler(targets, deadline, clock, cancel)
    total = sum(t.planned for t in targets)
    done = 0

    def run(batch: _Batch) -> int:
        target = targets[batch.index]
        count = 0
        start = clock()
        for guess in batch.guesses:
            if target.found is not None or cancel.is_set() or (not batch.floor and clock() > deadline):
                break
            count += 1
            if verifier.verify(guess.text.encode("utf-8"), target.hashed):
                with target._lock:
                    if target.found is None:
                        target.found = guess
                break
        elapsed = clock() - start
        with target._lock:
            target.tried += count
            target.hashing += elapsed
            target._ranges.append((batch.offset, count))
            if not batch.floor:
                target.spent += elapsed
        return count

    # As many batches in flight as workers: each choice of account sees the time of every batch before it.
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hg-crack") as pool:
        pending: dict[Future[int], _Batch] = {}
        while True:
            while len(pending) < workers and (batch := scheduler.take()) is not None:
                pending[pool.submit(run, batch)] = batch
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                scheduler.finish(pending.pop(fut))
                done += fut.result()
            if progress is not None:
                progress(done, total)
    for t in targets:
        if t.found is None and t.tried < t.planned:
            t.budget_ran_out = True
