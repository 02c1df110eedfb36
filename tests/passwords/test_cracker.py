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


def resumed(name: str, password: str, earlier: int, first: int = 30, rest: int = 5000) -> Target:
    """The target a re-scan builds: the same list (``first`` guaranteed + ``rest``), ``earlier`` already tried."""
    return Target.resuming(name, f"sha512:{password}", words(first, "f"), words(rest), earlier)


def test_resume_starts_after_the_earlier_guesses_and_keeps_the_guaranteed_count() -> None:
    """The floor is a minimum per run: on a resume it is the next 30 untried guesses, not the first 30 again."""
    first_run = resumed("ftp", "never", 0)
    verifier = run([first_run], budget=0.0)
    assert [c for _, c in verifier.calls] == [f"f{i}" for i in range(30)] and first_run.reached == 30
    second_run = resumed("ftp", "never", first_run.reached)
    verifier = run([second_run], budget=0.0)
    assert [c for _, c in verifier.calls] == [f"w{i}" for i in range(30)]  # the next 30 of the list, none again
    assert (second_run.tried, second_run.earlier, second_run.tried_in_all, second_run.reached) == (30, 30, 60, 60)
    assert second_run.list_size == 5030 and second_run.budget_ran_out


def test_each_run_reaches_further_with_the_same_budget() -> None:
    reached = 0
    for _ in range(3):
        t = resumed("alice", "never", reached, first=0)
        verifier = run([t], budget=0.5, costs={"sha512": DEAR})
        tried = [c for _, c in verifier.calls]
        assert tried == [f"w{i}" for i in range(reached, reached + len(tried))]  # from where it stopped, none twice
        assert t.reached == reached + len(tried) and len(tried) >= 29  # 0.5 s of 17 ms guesses
        reached = t.reached
    assert reached >= 3 * 29


def test_found_password_is_never_a_resume_point() -> None:
    """Hit: the password at w40 is found on the resumed run; its position stays at where the run began, so
    the cache never points at the password and the next run finds it again."""
    t = resumed("ftp", "w40", 30)
    run([t], budget=10.0)
    assert t.found == Guess("w40", "common password (rank 41)")
    assert (t.tried, t.tried_in_all, t.reached) == (41, 71, 30)
    again = resumed("ftp", "w40", t.reached)
    run([again], budget=10.0)
    assert again.found == Guess("w40", "common password (rank 41)")


def test_a_password_before_the_resume_point_is_not_tried_again() -> None:
    """Near miss of resuming: guesses an earlier run tried against this very hash are skipped (a changed hash is
    a new target with earlier=0, decided by the caller's cache)."""
    t = resumed("ftp", "f3", 30)
    verifier = run([t], budget=10.0)
    assert t.found is None and "f3" not in {c for _, c in verifier.calls} and not t.budget_ran_out


def test_exhausted_list_tries_nothing_and_is_not_unfinished() -> None:
    t = resumed("ftp", "never", 10_000, rest=50)
    verifier = run([t], budget=10.0)
    assert verifier.calls == [] and t.earlier == 80 and t.planned == 0
    assert not t.budget_ran_out and t.reached == 80


def test_reached_stops_at_the_first_hole_with_two_workers() -> None:
    """Two workers: a batch cut by the deadline may leave untried guesses before a later batch's; ``reached``
    is where the tried guesses stop being contiguous, so the next run tries the hole again."""
    fast = target("ftp", "sha512", "never")
    clock = Clock()
    verifier = CostedVerifier(clock, {"sha512": CHEAP})
    crack([fast], verifier, deadline=0.5, workers=2, clock=clock)
    tried = sorted(int(c[1:]) for _, c in verifier.calls)
    hole = next((i for i, n in enumerate(tried) if n != i), len(tried))
    assert fast.reached == hole and fast.reached <= fast.tried
