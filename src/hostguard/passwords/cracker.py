"""Trying guesses against many hashes on every core, within a time budget.

Every account first gets its guaranteed guesses (the most common passwords and those derived from its
names) whatever the budget; then the remaining guesses by rank, round-robin across accounts, until the
deadline. Hashing runs in threads: libxcrypt releases the GIL, so both cores work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from hostguard.passwords.guesses import Guess
from hostguard.passwords.verifiers import Verifier

CHUNK = 16


@dataclass
class Target:
    """One hash to attack, with its planned guesses and what happened."""

    account: str
    hashed: str
    first: Sequence[Guess]
    rest: Sequence[Guess]
    tried: int = 0
    found: Guess | None = None
    budget_ran_out: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def planned(self) -> int:
        """Every guess this account could get."""
        return len(self.first) + len(self.rest)


def _chunks(target: Target, guesses: Sequence[Guess]) -> list[tuple[Target, Sequence[Guess]]]:
    return [(target, guesses[i:i + CHUNK]) for i in range(0, len(guesses), CHUNK)]


def crack(targets: Sequence[Target], verifier: Verifier, *, deadline: float, workers: int,
          progress: Callable[[int, int], None] | None = None, cancel: threading.Event | None = None) -> None:
    """Fill in ``found``, ``tried`` and ``budget_ran_out`` of every target."""
    cancel = cancel or threading.Event()
    guaranteed = [c for t in targets for c in _chunks(t, t.first)]
    extra_per_target = [_chunks(t, t.rest) for t in targets]
    extra: list[tuple[Target, Sequence[Guess]]] = []
    for i in range(max((len(x) for x in extra_per_target), default=0)):  # round-robin by rank
        extra.extend(x[i] for x in extra_per_target if i < len(x))
    total = sum(t.planned for t in targets)
    done = 0

    def run(target: Target, guesses: Sequence[Guess], must: bool) -> int:
        count = 0
        for guess in guesses:
            if target.found is not None or cancel.is_set() or (not must and time.monotonic() > deadline):
                break
            count += 1
            if verifier.verify(guess.text.encode("utf-8"), target.hashed):
                with target._lock:
                    if target.found is None:
                        target.found = guess
                break
        with target._lock:
            target.tried += count
        return count

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="hg-crack") as pool:
        queue = [(t, g, True) for t, g in guaranteed] + [(t, g, False) for t, g in extra]
        pending: set[Future[int]] = set()
        index = 0
        while index < len(queue) or pending:
            while index < len(queue) and len(pending) < workers * 2:
                target, guesses, must = queue[index]
                index += 1
                if target.found is None and (must or time.monotonic() <= deadline) and not cancel.is_set():
                    pending.add(pool.submit(run, target, guesses, must))
            if not pending:
                continue
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                done += fut.result()
            if progress is not None:
                progress(done, total)
    for t in targets:
        if t.found is None and t.tried < t.planned:
            t.budget_ran_out = True
