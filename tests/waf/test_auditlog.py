"""The web servers' JSON audit logs read into WAF events (waf/auditlog.py): one entry of each engine's shape,
written here in the form the real servers write (tests/waf/test_servers.py reads what they really wrote),
what each field becomes, and hypothesis: whatever a line holds, the parser gives an event or None, never an
exception, and the store counts what is not an event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.store.state import StateStore
from hostguard.store.waf import WafStore
from hostguard.waf.auditlog import parse_entry, parse_line

V3 = {"transaction": {
    "client_ip": "192.0.2.7", "time_stamp": "Fri Dec  4 03:26:15 2026", "server_id": "2ce1", "client_port": 36880,
    "host_ip": "127.0.0.1", "host_port": 80, "unique_id": "179635477569.040613",
    "request": {"method": "GET", "http_version": 1.1, "uri": "/search?q=1'%20or%201=1--&password=hunter2",
                "headers": {"Host": "Shop.Example.TEST:8080", "User-Agent": "curl/7.88.1"}},
    "response": {"http_code": 403, "headers": {"Server": "nginx"}},
    "producer": {"modsecurity": "ModSecurity v3.0.9 (Linux)", "secrules_engine": "Enabled"},
    "messages": [
        {"message": "SQL Injection Attack Detected via libinjection",
         "details": {"match": "detected SQLi using libinjection.", "ruleId": "942100",
                     "data": "Matched Data: s&1c found within ARGS:q: 1' or 1=1--", "severity": "2", "tags": []}},
        {"message": "Inbound Anomaly Score Exceeded (Total Score: 5)",
         "details": {"ruleId": "949110", "data": "", "severity": "2", "tags": ["attack-generic"]}},
    ]}}
V2 = {
    "transaction": {"time": "04/Dec/2026:03:26:05.568309 +0100", "transaction_id": "axIyzX7Ol-8pLfmbtaj98QAAAIA",
                    "remote_address": "198.51.100.9", "remote_port": 56850, "local_address": "127.0.0.1"},
    "request": {"request_line": "POST /login?next=%2Fhome HTTP/1.1",
                "headers": {"Host": "shop.example.test", "Content-Type": "application/x-www-form-urlencoded"}},
    "response": {"protocol": "HTTP/1.1", "status": 403, "headers": {}},
    "audit_data": {
        "messages": [
            'Warning. detected SQLi using libinjection with fingerprint \'s&1c\' [file "/usr/share/modsecurity-crs/'
            'rules/REQUEST-942-APPLICATION-ATTACK-SQLI.conf"] [line "66"] [id "942100"] [msg "SQL Injection Attack '
            'Detected via libinjection"] [data "Matched Data: s&1c found within ARGS:password: x\' or 1=1--"] '
            '[severity "CRITICAL"] [tag "attack-sqli"] [tag "paranoia-level/1"]',
            'Access denied with code 403 (phase 2). [id "949110"] [msg "Inbound Anomaly Score Exceeded (Total '
            'Score: 5)"] [severity "CRITICAL"] [tag "attack-generic"]',
        ],
        "action": {"intercepted": True, "phase": 2, "message": "Operator GE matched 5 at TX:anomaly_score."},
        "engine_mode": "ENABLED"}}


def test_libmodsecurity3_entry() -> None:
    event = parse_entry(V3)
    assert event is not None
    assert (event.request_id, event.site, event.client, event.network, event.method) == (
        "nginx-179635477569.040613", "shop.example.test", "192.0.2.7", "192.0.2.0/24", "GET")
    assert event.path == "/search?q=…&password=…"   # query values never kept
    assert (event.action, event.status) == ("blocked", 403)   # 949110 refuses in what hostguard writes
    assert [r["id"] for r in event.rules] == [942100, 949110]
    assert event.rules[0]["data"] == "Matched Data: s&1c found within ARGS:q: 1' or 1=1--"
    assert event.time.endswith("+00:00") and event.time[:4] == "2026"


def test_libmodsecurity3_scored_and_detection_only() -> None:
    only_scored = json.loads(json.dumps(V3))
    only_scored["transaction"]["messages"] = only_scored["transaction"]["messages"][:1]
    only_scored["transaction"]["response"]["http_code"] = 200
    event = parse_entry(only_scored)
    assert event is not None and (event.action, event.status) == ("scored", 200)
    detect = json.loads(json.dumps(V3))
    detect["transaction"]["producer"]["secrules_engine"] = "DetectionOnly"
    event = parse_entry(detect)
    assert event is not None and event.action == "detected"
    none = json.loads(json.dumps(V3))
    none["transaction"]["messages"] = []
    assert parse_entry(none) is None   # no rule matched: not an event


def test_mod_security2_entry() -> None:
    event = parse_line(json.dumps(V2).encode())
    assert event is not None
    assert (event.request_id, event.site, event.client, event.method, event.path) == (
        "apache-axIyzX7Ol-8pLfmbtaj98QAAAIA", "shop.example.test", "198.51.100.9", "POST", "/login?next=…")
    assert event.time == "2026-12-04T02:26:05.568+00:00"   # its offset applied
    assert (event.action, event.status) == ("blocked", 403)
    assert [r["id"] for r in event.rules] == [942100, 949110]
    assert event.rules[0]["data"] == "Matched Data: s&1c found within ARGS:password: ***"   # secret masked
    assert event.rules[0]["tags"] == ["attack-sqli", "paranoia-level/1"]
    detect = json.loads(json.dumps(V2))
    detect["audit_data"]["engine_mode"] = "DETECTION_ONLY"
    del detect["audit_data"]["action"]
    assert parse_entry(detect).action == "detected"   # type: ignore[union-attr]


def test_a_host_that_is_not_a_plain_name_is_the_default_site() -> None:
    for host, site in (("[2001:db8::1]:443", "default"), ("a b", "default"), ("shop.example.test.", "shop.example.test"),
                       ("", "default"), ("x" * 70, "default"), ("198.51.100.2", "198.51.100.2")):
        entry = json.loads(json.dumps(V2))
        entry["request"]["headers"] = {"host": host}
        assert parse_entry(entry).site == site, host   # type: ignore[union-attr]


def test_bytes_that_are_not_utf8_are_read_with_replacement() -> None:
    line = json.dumps(V3).encode().replace(b"curl/7.88.1", b"curl\xac\xed\x00")
    event = parse_line(line)
    assert event is not None and event.request_id.startswith("nginx-")


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_give_an_event_or_none(data: bytes) -> None:
    parse_line(data)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_any_json_gives_an_event_or_none(value: Any) -> None:
    parse_entry(value)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["v2", "v3"]), st.data(), JSON)
def test_a_real_entry_with_any_field_replaced_gives_an_event_or_none(shape: str, data: st.DataObject,
                                                                     value: Any) -> None:
    entry = json.loads(json.dumps(V2 if shape == "v2" else V3))
    path = data.draw(st.sampled_from(_paths(entry)[1:]))
    node = entry
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    event = parse_entry(entry)
    if event is not None:
        assert event.rules and all(isinstance(r["id"], int) for r in event.rules)
        assert isinstance(event.status, int) and len(event.path) <= 500


def test_the_store_reads_an_audit_log_once_and_counts_what_is_not_an_event(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_bytes(json.dumps(V3).encode() + b"\nnot json\n" + json.dumps(V2).encode() + b"\n{\"transaction\": {}}\n"
                    + b'{"cut by a crash')
    state = StateStore(str(tmp_path / "state"))
    try:
        store = WafStore(state)
        first = store.ingest(str(log), parse_line)
        assert (first.added, first.skipped) == (2, 2)
        assert sorted(e.request_id for e in store.events()) == ["apache-axIyzX7Ol-8pLfmbtaj98QAAAIA",
                                                               "nginx-179635477569.040613"]
        assert store.ingest(str(log), parse_line).added == 0
    finally:
        state.close()
