"""The fact graph: typed handles, inputs passed as arguments, each fact computed once even under threads."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from hostguard.checks.accounts import KNOWN_ACCOUNTS
from hostguard.engine.facts import Fact, FactError, Facts, config_input
from hostguard.engine.runner import run_scan
from hostguard.findings import SkipReason
from hostguard.host.accounts import ACCOUNTS
from hostguard.host.authorized_keys import AUTHORIZED_KEYS
from hostguard.host.base import HostError, RootHost, Unavailable
from hostguard.host.sshd import SSHD, SSHD_FILES
from hostguard.store.state import StateStore
from tests.conftest import FAST, make_config


class CountingHost(RootHost):
    """A fixture tree that counts every file read, by host path."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.reads: Counter[str] = Counter()
        self._count_lock = threading.Lock()

    def read_bytes(self, path: str, limit: int = 64 * 1024 * 1024) -> bytes:
        with self._count_lock:
            self.reads[path] += 1
        return super().read_bytes(path, limit)


def test_eight_threads_share_one_computation_of_each_file(clean_tree: Path) -> None:
    host = CountingHost(str(clean_tree))
    facts = Facts(host, make_config())
    barrier = threading.Barrier(8)
    results: list[object] = []

    def ask(fact: Fact[object]) -> None:
        barrier.wait()
        results.append(facts.get(fact))

    threads = [threading.Thread(target=ask, args=(f,)) for f in (SSHD, AUTHORIZED_KEYS, ACCOUNTS, SSHD) * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8
    assert host.reads["/etc/passwd"] == 1
    assert host.reads["/etc/ssh/sshd_config"] == 1
    assert host.reads["/etc/login.defs"] == 1


def test_a_whole_scan_reads_passwd_and_sshd_config_once(tmp_path: Path, clean_tree: Path) -> None:
    host = CountingHost(str(clean_tree))
    state = StateStore(str(tmp_path / "state"))
    try:
        outcome = run_scan(host, make_config(**FAST), state)
    finally:
        state.close()
    assert {s.reason for s in outcome.report.skipped} <= {SkipReason.LIVE_ONLY, SkipReason.BUDGET,
                                                          SkipReason.UNSUPPORTED, SkipReason.TOOL_MISSING}
    # tool_missing only where no advisory copy was fetched into this state directory
    assert {s.check for s in outcome.report.skipped if s.reason == SkipReason.TOOL_MISSING} == {"vulns.package"}
    # unsupported only where the fixture has nothing to read: no package database for integrity
    assert {s.check for s in outcome.report.skipped if s.reason == SkipReason.UNSUPPORTED} == {
        "integrity.changed_file", "integrity.mode_changed"}
    assert host.reads["/etc/passwd"] == 1
    assert host.reads["/etc/shadow"] == 1
    assert host.reads["/etc/ssh/sshd_config"] == 1


def test_concurrent_askers_wait_for_the_first_computation() -> None:
    calls: list[int] = []

    def slow(host: object) -> int:
        calls.append(1)
        time.sleep(0.05)  # long enough for the other threads to arrive while it runs
        return 42

    fact: Fact[int] = Fact("slow", slow)
    facts = Facts(RootHost("/"), make_config())
    barrier = threading.Barrier(8)
    values: list[int] = []

    def ask() -> None:
        barrier.wait()
        values.append(facts.get(fact))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert values == [42] * 8 and calls == [1]


def test_inputs_arrive_as_arguments_in_order() -> None:
    base: Fact[int] = Fact("base", lambda host: 2)
    seen: list[tuple[object, ...]] = []

    def derived(host: object, value: int, maybe: int | None, ssh: object) -> int:
        seen.append((value, maybe, type(ssh).__name__))
        return value * 10

    missing: Fact[int] = Fact("missing", lambda host: (_ for _ in ()).throw(Unavailable(SkipReason.LIVE_ONLY, "no")))
    fact: Fact[int] = Fact("derived", derived, inputs=(base, missing.optional, config_input("ssh")))
    assert Facts(RootHost("/"), make_config()).get(fact) == 20
    assert seen == [(2, None, "SshConfig")]


def test_an_unavailable_input_makes_the_derived_fact_unavailable_for_the_same_reason() -> None:
    def live_only(host: object) -> int:
        raise Unavailable(SkipReason.LIVE_ONLY, "needs a running system")

    source: Fact[int] = Fact("source", live_only)
    derived: Fact[int] = Fact("derived", lambda host, v: v + 1, inputs=(source,))
    facts = Facts(RootHost("/"), make_config())
    for _ in range(2):  # remembered: asked twice, same answer
        with pytest.raises(Unavailable) as info:
            facts.get(derived)
        assert info.value.reason == SkipReason.LIVE_ONLY
    assert not facts.loaded(derived) and not facts.loaded(source)


@pytest.mark.parametrize("error, reason", [
    (HostError("/etc/x: Permission denied"), SkipReason.ERROR),
    (PermissionError("denied"), SkipReason.NOT_ROOT),
    (ZeroDivisionError("bug"), SkipReason.ERROR),
])
def test_collector_errors_become_unavailable(error: Exception, reason: SkipReason) -> None:
    def broken(host: object) -> int:
        raise error

    calls = Counter[str]()

    def counted(host: object) -> int:
        calls["n"] += 1
        return broken(host)

    fact: Fact[int] = Fact("broken", counted)
    facts = Facts(RootHost("/"), make_config())
    for _ in range(3):
        with pytest.raises(Unavailable) as info:
            facts.get(fact)
        assert info.value.reason == reason
    assert calls["n"] == 1


def test_given_facts_replace_collectors_and_missing_given_facts_say_so(clean_tree: Path) -> None:
    facts = Facts(RootHost(str(clean_tree)), make_config(), given={SSHD_FILES: None})
    assert facts.get(SSHD_FILES) is None
    with pytest.raises(Unavailable, match="provided by the runner"):
        Facts(RootHost(str(clean_tree)), make_config()).get(KNOWN_ACCOUNTS)


def test_a_cycle_met_at_run_time_fails_instead_of_hanging() -> None:
    a: Fact[int] = Fact("a", lambda host, b: 1)
    b: Fact[int] = Fact("b", lambda host, a: 1, inputs=(a,))
    a.inputs = (b,)
    with pytest.raises(FactError, match="fact cycle through a"):
        Facts(RootHost("/"), make_config()).get(a)


def _failing(reason: SkipReason) -> Fact[int]:
    def collect(host: object) -> int:
        raise Unavailable(reason, f"{reason} here")

    return Fact(f"failing_{reason}", collect)


@pytest.mark.parametrize("reason, optional, best_effort", [
    (SkipReason.LIVE_ONLY, None, None),
    (SkipReason.UNSUPPORTED, None, None),
    (SkipReason.ERROR, "error", None),     # a broken file is not "absent": optional readers fail with it
])
def test_optional_inputs_absorb_absence_and_best_effort_also_errors(reason: SkipReason, optional: str | None,
                                                                    best_effort: str | None) -> None:
    source = _failing(reason)
    results = {}
    for flavour, item in (("optional", source.optional), ("best_effort", source.best_effort)):
        fact: Fact[object] = Fact(f"reader_{flavour}", lambda host, v: v, inputs=(item,))
        try:
            results[flavour] = Facts(RootHost("/"), make_config()).get(fact)
        except Unavailable as exc:
            results[flavour] = str(exc.reason)
    assert results == {"optional": optional, "best_effort": best_effort}


def test_an_iterator_is_stored_as_a_tuple_so_every_reader_sees_every_item() -> None:
    fact: Fact[object] = Fact("gen", lambda host: (n for n in range(3)))
    facts = Facts(RootHost("/"), make_config())
    assert facts.get(fact) == (0, 1, 2) and facts.get(fact) == (0, 1, 2)


def test_each_caller_gets_its_own_unavailable() -> None:
    fact = _failing(SkipReason.LIVE_ONLY)
    facts = Facts(RootHost("/"), make_config())
    raised = []
    for _ in range(2):
        try:
            facts.get(fact)
        except Unavailable as exc:
            raised.append(exc)
    assert raised[0] is not raised[1] and raised[0].detail == raised[1].detail
