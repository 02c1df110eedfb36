"""hostguard's own recorded probes told apart from the same failures from elsewhere; and the detectors on the
annotated sample lines of tests/fixtures/logs (parsed by the real parsers, not written as events)."""

from __future__ import annotations

from datetime import UTC, datetime

from hostguard.detect.base import Logon
from hostguard.detect.brute_force import FAST
from hostguard.detect.probes import OwnProbes, service_map
from hostguard.store.state import RecordedProbe
from tests.detect.streams import configured, ids, run
from tests.logons.samples import cases, run_case

STARTED, FINISHED = "2024-05-03T12:00:00+00:00", "2024-05-03T12:00:20+00:00"


def probes(service: str = "mysql", account: str = "shop", attempts: int = 5, endpoint: str = "tcp 127.0.0.1:3306"
           ) -> OwnProbes:
    return OwnProbes([RecordedProbe(service, endpoint, account, STARTED, attempts, "not_found", None, FINISHED)],
                     slack=10)


def test_failures_of_our_probe_session_are_ours_and_the_same_from_elsewhere_are_not() -> None:
    own = probes()
    assert own.ours("mysql", "failure", "shop", "127.0.0.1", "2024-05-03T12:00:05+00:00", 1)
    assert own.ours("mysql", "failure", "shop", None, "2024-05-03T14:00:06+02:00", 1)  # a socket; another offset
    assert not own.ours("mysql", "failure", "shop", "198.51.100.9", "2024-05-03T12:00:07+00:00", 1)


def test_near_misses_of_a_probe_session() -> None:
    own = probes()
    inside = "2024-05-03T12:00:05+00:00"
    assert not own.ours("mysql", "failure", "shop", "127.0.0.1", "2024-05-03T12:00:31+00:00", 1)  # after + slack
    assert not own.ours("mysql", "failure", "shop", "127.0.0.1", "2024-05-03T11:59:49+00:00", 1)  # before - slack
    assert not own.ours("mysql", "failure", "web", "127.0.0.1", inside, 1)          # another account
    assert not own.ours("postgresql", "failure", "shop", "127.0.0.1", inside, 1)    # another service
    assert not own.ours("mysql", "success", "shop", "127.0.0.1", inside, 1)         # not a failure
    assert not own.ours("mysql", "failure", "shop", "127.0.0.1", None, 1)           # no time: cannot be placed


def test_a_session_explains_no_more_failures_than_it_made() -> None:
    own = probes(attempts=3)
    at = "2024-05-03T12:00:05+00:00"
    assert [own.ours("mysql", "failure", "shop", "127.0.0.1", at, 1) for _ in range(5)] == [True] * 3 + [False] * 2


def test_probe_service_names_map_to_the_daemons_that_log_them() -> None:
    assert probes("ftp", "anonymous").ours("vsftpd", "failure", "anonymous", "::1", "2024-05-03T12:00:05+00:00", 1)
    assert service_map()["redis"] == ()


def test_ours_failures_from_loopback_do_not_count_while_the_attackers_do() -> None:
    own = probes(attempts=10)

    def logon(i: int, ip: str) -> Logon:
        when = datetime(2024, 5, 3, 12, 0, i, tzinfo=UTC)
        ours = own.ours("mysql", "failure", "shop", ip, when.isoformat(), 1)
        return Logon("error.log", i, "mysql", "failure", 1, "shop", ip, None, "password", when.isoformat(),
                     when.timestamp(), ours)

    stream = [logon(i, "127.0.0.1") for i in range(10)] + [logon(10 + i, "198.51.100.9") for i in range(10)]
    assert [e.ours for e in stream] == [True] * 10 + [False] * 10
    assert ids(run(stream)) == [(FAST, {"kind": "ip", "address": "198.51.100.9"})]
    assert run(stream[:10] + stream[10:19]) == []  # ours plus nine of theirs: under the threshold


def sample_events(name: str) -> list[Logon]:
    """The events the real parsers give for one annotated sample case."""
    case, settings = next((c, s) for n, c, s in cases() if n == name)
    events, _ = run_case(case, settings)
    return [Logon("sample", e["line"], e["service"], e["outcome"], e["count"], e["user"], e["ip"], e["port"],
                  e["method"], e["time"], datetime.fromisoformat(e["time"]).timestamp()) for e in events]


def test_annotated_sshd_lines_pam_duplicates_do_not_reach_a_threshold_of_four() -> None:
    """Three attempts logged with PAM's two extra lines: three failures (a threshold of 3 fires, on the
    three sshd lines), never five (a threshold of 4 stays quiet)."""
    events = sample_events("sshd:pam-lines-are-not-second-events")
    raised = run(events, configured(brute_force={"fast_failures": 3}))
    assert ids(raised) == [(FAST, {"kind": "ip", "address": "198.51.100.20"})]
    assert [s["at"] for s in raised[0].alert.evidence["samples"]] == ["sample:2", "sample:3", "sample:4"]
    assert run(events, configured(brute_force={"fast_failures": 4})) == []
