"""Unusual logons against the learned and approved baseline; GeoIP answers injected for documentation
addresses (and a lookup that must never be asked about private ones)."""

from __future__ import annotations

import pytest

from hostguard.detect.base import Logon, Raised
from hostguard.detect.baseline import DETECTOR, MANUAL, BaselineError, Entry, State, approved, normalize
from hostguard.detect.success_after import DETECTOR as SUCCESS_AFTER
from tests.detect.streams import ATTACKER, OWNER, configured, event, failures, run

HOUR = 3600.0
COUNTRIES = {OWNER: "DE", "192.0.2.12": "DE", "203.0.113.50": "BR", ATTACKER: "NL"}


def country(ip: str) -> str | None:
    return COUNTRIES.get(ip)


def login(at: float, ip: str | None = OWNER, user: str = "ops", service: str = "sshd", new: bool = True) -> Logon:
    return event(at, outcome="success", ip=ip, user=user, method="publickey", service=service, new=new)


def learned_state(*logins: Logon) -> State:
    """The baseline after the owner's logons during the learning window."""
    state = State()
    run(list(logins), country=country, learned=state)
    return state


def unusual(raised: list[Raised]) -> list[dict[str, str]]:
    return [r.alert.evidence["unusual"] for r in raised if r.alert.id == DETECTOR]


def test_the_learning_window_learns_and_raises_nothing() -> None:
    state = State()
    raised = run([login(0), login(2 * HOUR, ip="203.0.113.50", user="deploy")], country=country, learned=state)
    assert raised == []
    assert {k for k, e in state.entries.items() if e.approved} == {
        ("ip", OWNER), ("country", "DE"), ("hour", "10"), ("account", "ops"),
        ("ip", "203.0.113.50"), ("country", "BR"), ("hour", "12"), ("account", "deploy")}
    assert state.learning_start == pytest.approx(login(0).ts)


def test_after_learning_a_new_ip_and_country_are_named() -> None:
    state = learned_state(login(0))
    raised = run([login(48 * HOUR, ip="203.0.113.50")], country=country, learned=state)
    assert unusual(raised) == [{"ip": "203.0.113.50", "country": "BR"}]
    alert = raised[0].alert
    assert alert.severity == "high"
    assert dict(alert.target) == {"kind": "user", "user": "ops", "service": "sshd", "address": "203.0.113.50",
                                  "dimensions": ("country", "ip")}
    assert "hostguard logons baseline approve ip 203.0.113.50" in (alert.remediation.manual or "")
    assert "hostguard logons baseline approve country BR" in (alert.remediation.manual or "")


def test_a_known_ip_at_a_known_hour_is_a_near_miss() -> None:
    state = learned_state(login(0))
    assert run([login(48 * HOUR)], country=country, learned=state) == []


def test_a_new_address_in_an_approved_country_names_only_the_ip() -> None:
    state = learned_state(login(0))
    assert unusual(run([login(48 * HOUR, ip="192.0.2.12")], country=country, learned=state)) == [{"ip": "192.0.2.12"}]


def test_hours_count_with_their_slack() -> None:
    state = learned_state(login(0))  # 10:00
    assert run([login(24 * HOUR + 1 * HOUR + 5)], country=country, learned=state) == []  # 11:00, slack 1
    assert unusual(run([login(48 * HOUR + 5 * HOUR)], country=country, learned=state)) == [{"hour": "15"}]
    strict = configured(baseline={"hour_slack": 0})
    assert unusual(run([login(72 * HOUR + 1 * HOUR)], strict, country, learned_state(login(0)))) == [{"hour": "11"}]


def test_a_new_account_is_named() -> None:
    state = learned_state(login(0))
    assert unusual(run([login(48 * HOUR, user="backup")], country=country, learned=state)) == [
        {"account": "backup"}]


def test_a_value_needs_approve_after_sightings_during_learning() -> None:
    state = State()
    run([login(0), login(HOUR, ip="192.0.2.12")], configured(baseline={"approve_after": 2}), country, state)
    assert not state.entries[("ip", OWNER)].approved and state.entries[("country", "DE")].approved


def test_private_addresses_are_never_geolocated() -> None:
    asked: list[str] = []

    def spy(ip: str) -> str | None:
        asked.append(ip)
        return "US"

    state = State()
    run([login(0, ip="10.1.2.3"), login(60, ip="127.0.0.1"), login(120, ip="fe80::1"), login(180, ip=OWNER)],
        country=spy, learned=state)
    assert asked == [OWNER]
    assert ("country", "US") in state.entries


def test_a_success_after_brute_force_is_never_learned() -> None:
    state = State()
    raised = run([*failures(5, ip=ATTACKER), login(100, ip=ATTACKER, user="root")], country=country, learned=state)
    assert [r.alert.id for r in raised] == [SUCCESS_AFTER]
    assert ("ip", ATTACKER) not in state.entries and ("country", "NL") not in state.entries
    assert state.learning_start is None


def test_only_new_events_are_learned_or_judged() -> None:
    state = learned_state(login(0))
    assert run([login(48 * HOUR, ip="203.0.113.50", new=False)], country=country, learned=state) == []
    assert ("ip", "203.0.113.50") not in state.entries


def test_services_outside_the_baseline_are_not_judged() -> None:
    state = learned_state(login(0))
    assert run([login(48 * HOUR, ip="203.0.113.50", service="dovecot")], country=country, learned=state) == []


def test_approved_networks_and_hour_ranges_cover_their_values() -> None:
    state = State.of([Entry("ip", "198.51.100.0/24", 0, True, MANUAL, "", ""),
                      Entry("hour", "22-06", 0, True, MANUAL, "", "")], None)
    assert approved(state, "ip", "198.51.100.77", 0) and not approved(state, "ip", "198.51.101.1", 0)
    assert approved(state, "hour", "03", 0) and approved(state, "hour", "22", 0)
    assert not approved(state, "hour", "12", 0) and approved(state, "hour", "07", 1)


@pytest.mark.parametrize(("dimension", "value", "stored"), [
    ("ip", "192.0.2.7", "192.0.2.7"), ("ip", "2001:db8::1/64", "2001:db8::/64"), ("country", "de", "DE"),
    ("hour", "8-18", "08-18"), ("hour", "7", "07"), ("account", "ops", "ops")])
def test_values_are_normalized(dimension: str, value: str, stored: str) -> None:
    assert normalize(dimension, value) == stored


@pytest.mark.parametrize(("dimension", "value"), [
    ("ip", "not-an-ip"), ("country", "DEU"), ("hour", "24"), ("hour", "1-2-3"), ("account", "a b"), ("city", "x")])
def test_bad_values_are_one_line_errors(dimension: str, value: str) -> None:
    with pytest.raises(BaselineError) as info:
        normalize(dimension, value)
    assert "\n" not in str(info.value)
