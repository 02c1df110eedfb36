"""The budget is shared between accounts by time: counted with guesses whose cost the test sets.

A guess "costs" what the test verifier adds to a clock the cracker is given, so every run is exact and
repeatable on a loaded machine: no assertion here reads the wall clock. One worker makes the order of
batches deterministic; the threaded path with real hashes is tested in tests/checks/test_weak_passwords.py.
"""

from __future__ import annotations

import threading

import pytest

from hostguard.passwords.cracker import Target, crack
from hostguard.passwords.guesses import Guess
from hostguard.passwords.verifiers import Verifier

CHEAP, DEAR = 0.001, 0.017  # seconds per guess: about SHA-512 against yescrypt on this kind of machine


class Clock:
    """Time that passes only when a guess is hashed."""

    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class CostedVerifier(Verifier):
    """'Hashes' are ``scheme:password``; verifying one costs its scheme's seconds on the test's clock."""

    def __init__(self, clock: Clock, costs: dict[str, float]) -> None:
        self.clock = clock
        self.costs = costs
        self.calls: list[tuple[str, str]] = []  # (hash, candidate) in the order they were tried

    def scheme(self, hashed: str) -> str | None:
        return hashed.split(":", 1)[0]

    def verify(self, candidate: bytes, hashed: str) -> bool:
        self.calls.append((hashed, candidate.decode()))
        self.clock.advance(self.costs[hashed.split(":", 1)[0]])
        return hashed.split(":", 1)[1] == candidate.decode()

    def working_schemes(self) -> dict[str, str]:
        return dict.fromkeys(self.costs, "ok")


def words(n: int, prefix: str = "w") -> list[Guess]:
    return [Guess(f"{prefix}{i}", f"common password (rank {i + 1})") for i in range(n)]


def target(name: str, scheme: str, password: str, first: int = 0, rest: int = 5000) -> Target:
    return Target(name, f"{scheme}:{password}", words(first, "f"), words(rest))


def run(targets: list[Target], budget: float, costs: dict[str, float] | None = None) -> CostedVerifier:
    clock = Clock()
    verifier = CostedVerifier(clock, costs or {"sha512": CHEAP, "yescrypt": DEAR})
    crack(targets, verifier, deadline=clock() + budget, workers=1, clock=clock)
    return verifier


def test_equal_time_not_equal_guesses() -> None:
    fast, slow = target("ftp", "sha512", "never"), target("alice", "yescrypt", "never")
    run([fast, slow], budget=2.0)
    # each account had half the time, to within one batch (SLICE) and one guess past the deadline
    assert fast.spent == pytest.approx(1.0, abs=0.06) and slow.spent == pytest.approx(1.0, abs=0.06)
    assert 14 <= fast.tried / slow.tried <= 20  # the cost ratio is 17: round-robin gave a ratio of 1
    assert fast.budget_ran_out and slow.budget_ran_out


def test_cheap_hash_found_where_round_robin_stopped_short() -> None:
    """Hit: rank 800 of a SHA-512 account is reached; near miss: the yescrypt account's rank 800 is not."""
    fast, slow = target("ftp", "sha512", "w799"), target("alice", "yescrypt", "w799")
    # Round-robin with this budget gave each account 2.0 / (CHEAP + DEAR) = 111 guesses.
    run([fast, slow], budget=2.0)
    assert fast.found == Guess("w799", "common password (rank 800)") and fast.tried == 800
    assert slow.found is None and slow.budget_ran_out and slow.tried < 800


def test_found_account_gives_its_time_back() -> None:
    def others_tried(password: str) -> tuple[int, int]:
        first, b, c = target("ftp", "sha512", password), target("bob", "yescrypt", "x"), target("carol", "yescrypt", "x")
        run([first, b, c], budget=3.0)
        return b.tried, c.tried

    keeps_going = others_tried("never")  # a third of the time each: ~59 guesses
    found_early = others_tried("w4")  # found after 5 guesses: the others share nearly all of it: ~88
    assert all(early >= 1.4 * late for early, late in zip(found_early, keeps_going, strict=True))


def test_floor_is_tried_whatever_the_budget_and_does_not_count_as_share() -> None:
    fast, slow = target("ftp", "sha512", "never", first=30), target("alice", "yescrypt", "never", first=30)
    verifier = run([fast, slow], budget=0.0)
    assert (fast.tried, slow.tried) == (30, 30)  # the floor, past a deadline that was already due
    assert (fast.spent, slow.spent) == (0.0, 0.0)
    assert {c for _, c in verifier.calls} == {f"f{i}" for i in range(30)}


def test_floor_first_then_cheapest_share_by_rank() -> None:
    fast, slow = target("ftp", "sha512", "never", first=3), target("alice", "yescrypt", "never", first=3)
    verifier = run([fast, slow], budget=0.5)
    tried = [c for h, c in verifier.calls if h == fast.hashed]
    assert tried[:3] == ["f0", "f1", "f2"] and tried[3:] == [f"w{i}" for i in range(len(tried) - 3)]
    first_rest = next(i for i, (_, c) in enumerate(verifier.calls) if not c.startswith("f"))
    assert all(c.startswith("f") for _, c in verifier.calls[:first_rest]) and first_rest == 6


def test_account_out_of_guesses_leaves_its_time() -> None:
    short, slow = target("ftp", "sha512", "never", rest=10), target("alice", "yescrypt", "never")
    run([short, slow], budget=1.0)
    assert short.tried == 10 and not short.budget_ran_out  # every planned guess: nothing left unchecked
    assert slow.spent == pytest.approx(1.0 - 10 * CHEAP, abs=DEAR + 1e-9)


def test_cancel_stops_even_the_floor() -> None:
    cancel = threading.Event()
    cancel.set()
    t = target("ftp", "sha512", "f1", first=30)
    clock = Clock()
    crack([t], CostedVerifier(clock, {"sha512": CHEAP}), deadline=10.0, workers=1, cancel=cancel, clock=clock)
    assert t.tried == 0 and t.found is None and t.budget_ran_out


def test_several_workers_share_time_too() -> None:
    """With two workers the order varies, but every guess is tried once and the shares stay even."""
    fast, slow = target("ftp", "sha512", "never"), target("alice", "yescrypt", "never")
    clock = Clock()
    verifier = CostedVerifier(clock, {"sha512": CHEAP, "yescrypt": DEAR})
    crack([fast, slow], verifier, deadline=2.0, workers=2, clock=clock)
    per_target = {h: [c for hh, c in verifier.calls if hh == h] for h in (fast.hashed, slow.hashed)}
    for t in (fast, slow):
        assert per_target[t.hashed] == [f"w{i}" for i in range(t.tried)]  # by rank, none twice, none skipped
    assert fast.tried > 8 * slow.tried
