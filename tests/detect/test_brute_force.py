"""Brute force from one source: fast and slow rules, each with its hit and its near misses."""

from __future__ import annotations

from hostguard.detect.brute_force import FAST, SLOW
from hostguard.remediation import Action
from tests.detect.streams import ATTACKER, OTHER, configured, event, failures, ids, numbered, run

FAST_TARGET = (FAST, {"kind": "ip", "address": ATTACKER})


def test_ten_failures_in_five_minutes_is_a_fast_brute_force_with_a_block_step() -> None:
    raised = run(numbered(failures(10, every=20)))
    assert ids(raised) == [FAST_TARGET]
    alert = raised[0].alert
    assert alert.severity == "high"
    assert alert.evidence["failures"] == 10 and alert.evidence["users"] == {"root": 10}
    assert [s["at"] for s in alert.evidence["samples"]] == [f"auth.log:{i}" for i in range(1, 6)]
    assert alert.event["line"] == 10 and alert.time == "2024-03-04T10:03:00+00:00"
    assert alert.remediation.steps == (Action("block", (("target", ATTACKER), ("for", "1h"), ("reason", FAST))),)


def test_nine_failures_stay_under_the_threshold() -> None:
    assert run(failures(9, every=20)) == []


def test_ten_failures_spread_wider_than_the_window_are_no_fast_brute_force() -> None:
    assert run(failures(10, every=40)) == []  # 360 s from first to last: never 10 within 300 s


def test_failures_from_two_sources_are_counted_apart() -> None:
    assert run(failures(5, every=5) + failures(5, every=5, start=1, ip=OTHER)) == []


def test_a_repeated_message_counts_as_its_attempts() -> None:
    assert ids(run([event(0, count=4), event(1, count=6)])) == [FAST_TARGET]
    assert run([event(0, count=4), event(1, count=5)]) == []


def test_probes_count_toward_their_source_unless_configured_not_to() -> None:
    stream = failures(5) + failures(5, start=10, outcome="probe", user=None, method=None)
    assert ids(run(stream)) == [FAST_TARGET]
    assert run(stream, configured(brute_force={"count_probes": False})) == []


def test_successes_local_events_and_our_own_probes_never_count() -> None:
    assert run(failures(12, outcome="success")) == []
    assert run(failures(12, ip=None)) == []
    assert run(failures(12, ours=True)) == []


def test_one_episode_is_one_alert_updated_until_the_source_is_quiet() -> None:
    raised = run(failures(30, every=5))
    assert ids(raised) == [FAST_TARGET]
    assert raised[0].alert.evidence["failures"] == 30
    # quiet for longer than the window: a second episode, the same fingerprint
    again = run(failures(10, every=5) + failures(10, every=5, start=5000))
    assert [r.alert.evidence["failures"] for r in again] == [10, 10]
    assert again[0].alert.fingerprint == again[1].alert.fingerprint


def test_ipv6_sources_are_grouped_per_64() -> None:
    stream = [event(i, ip=f"2001:db8:0:1::{i + 1:x}") for i in range(10)]
    assert ids(run(stream)) == [(FAST, {"kind": "ip", "address": "2001:db8:0:1::/64"})]
    split = [event(i, ip=f"2001:db8:0:{i % 2}::{i + 1:x}") for i in range(10)]
    assert run(split) == []  # two /64 networks, five each


def test_slow_brute_force_over_hours() -> None:
    raised = run(failures(40, every=450))  # one every 7.5 min: never 10 in 5 min, 40 within 6 h
    assert ids(raised) == [(SLOW, {"kind": "ip", "address": ATTACKER})]
    assert raised[0].alert.severity == "medium"
    assert run(failures(39, every=450)) == []


def test_the_slow_rule_is_quiet_for_a_source_the_fast_rule_reported() -> None:
    assert ids(run(failures(50, every=2))) == [FAST_TARGET]
