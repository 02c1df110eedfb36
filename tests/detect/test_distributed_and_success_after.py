"""Distributed brute force against one account, and success after brute force: hits and near misses."""

from __future__ import annotations

from hostguard.detect.base import Logon
from hostguard.detect.distributed import DETECTOR as DISTRIBUTED
from hostguard.detect.success_after import DETECTOR as SUCCESS_AFTER
from tests.detect.streams import ATTACKER, OTHER, OWNER, configured, event, failures, ids, run


def spray(sources: int, per_source: int, user: str = "root", start: float = 0.0) -> list[Logon]:
    """``per_source`` failures against ``user`` from each of ``sources`` addresses, interleaved, 10 s apart."""
    return [event(start + 10 * (i * sources + s), ip=f"203.0.113.{s + 1}", user=user)
            for i in range(per_source) for s in range(sources)]


def test_twenty_failures_from_five_sources_against_one_account() -> None:
    raised = run(spray(5, 4))
    assert ids(raised) == [(DISTRIBUTED, {"kind": "user", "user": "root", "service": "sshd"})]
    assert raised[0].alert.evidence["sources"] == 5 and raised[0].alert.evidence["failures"] == 20
    assert raised[0].alert.remediation.manual  # blocking one source does not stop a botnet: by hand


def test_four_sources_or_nineteen_failures_are_near_misses() -> None:
    assert run(spray(4, 5)) == []
    assert run(spray(5, 4)[:19]) == []


def test_failures_against_different_accounts_are_counted_apart() -> None:
    stream = spray(5, 2, user="root") + spray(5, 2, user="admin", start=1)
    assert run(stream) == []


def test_probes_name_no_account_and_do_not_count() -> None:
    stream = [event(i, ip=f"203.0.113.{i % 5 + 1}", outcome="probe") for i in range(20)]
    assert DISTRIBUTED not in [r.alert.id for r in run(stream)]


def test_success_from_the_source_that_just_failed_repeatedly_is_critical() -> None:
    raised = run(failures(5, every=30) + [event(200, outcome="success", line=6)])
    assert ids(raised) == [(SUCCESS_AFTER, {"kind": "user", "user": "root", "service": "sshd", "address": ATTACKER})]
    alert = raised[0].alert
    assert alert.severity == "critical" and alert.evidence["because"] == ["source"]
    assert alert.event["outcome"] == "success" and alert.time == "2024-03-04T10:03:20+00:00"
    assert "hostguard block 198.51.100.20" in (alert.remediation.manual or "")


def test_a_success_from_a_different_source_is_a_near_miss() -> None:
    assert run(failures(8, every=30) + [event(300, outcome="success", ip=OWNER)]) == []


def test_four_failures_then_a_success_is_a_near_miss() -> None:
    assert run(failures(4, every=30) + [event(200, outcome="success")]) == []


def test_failures_outside_the_window_are_a_near_miss() -> None:
    assert run(failures(6, every=30) + [event(3600 + 200, outcome="success")]) == []


def test_probes_then_a_success_are_a_near_miss() -> None:
    stream = failures(8, outcome="probe", user=None, method=None) + [event(100, outcome="success")]
    assert run(stream) == []


def test_a_password_success_to_an_account_sprayed_from_many_sources() -> None:
    stream = spray(5, 1) + [event(100, outcome="success", ip=OTHER)]
    raised = run(stream, configured(distributed={"sources": 6}))  # the spray alone stays under its detector
    assert ids(raised) == [(SUCCESS_AFTER, {"kind": "user", "user": "root", "service": "sshd", "address": OTHER})]
    assert raised[0].alert.evidence["because"] == ["account"] and raised[0].alert.evidence["account_sources"] == 5


def test_a_key_success_to_a_sprayed_account_is_a_near_miss() -> None:
    stream = spray(5, 1) + [event(100, outcome="success", ip=OTHER, method="publickey")]
    assert run(stream, configured(distributed={"sources": 6})) == []


def test_our_own_probe_failures_never_make_a_success_suspicious() -> None:
    stream = failures(6, ip="127.0.0.1", service="mysql", user="shop", ours=True)
    assert run([*stream, event(100, outcome="success", ip="127.0.0.1", service="mysql", user="shop")]) == []
