"""The decision shared by the proxy and the middleware: client address behind proxies, events without
bodies or secrets, the block answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostguard.waf.config import WafConfig, WafSite
from hostguard.waf.gate import DATA_LIMIT, Gate, client_address, mask
from tests.waf.test_engine import _need_library

TRUSTED = ("192.0.2.0/24", "2001:db8::/32")


@pytest.mark.parametrize(("peer", "xff", "client"), [
    ("198.51.100.7", "203.0.113.9", "198.51.100.7"),                 # not from a trusted proxy: ignored
    ("192.0.2.10", "198.51.100.7", "198.51.100.7"),                  # one trusted hop
    ("192.0.2.10", "6.6.6.6, 198.51.100.7, 192.0.2.11", "198.51.100.7"),  # the client's own claim is left of it
    ("192.0.2.10", "garbage, 198.51.100.7", "198.51.100.7"),
    ("192.0.2.10", "198.51.100.7, not-an-ip", "192.0.2.10"),          # an unreadable hop ends the walk
    ("2001:db8::1", "198.51.100.8", "198.51.100.8"),
    ("192.0.2.10", "", "192.0.2.10"),
])
def test_forwarded_for_is_believed_only_from_trusted_proxies(peer: str, xff: str, client: str) -> None:
    headers = [("X-Forwarded-For", xff)] if xff else []
    assert client_address(peer, headers, TRUSTED) == client
    assert client_address(peer, headers, ()) == peer


def test_secret_values_are_masked_and_data_is_cut() -> None:
    assert mask("Matched Data: ' or 1=1 found within ARGS:password: ' or 1=1--") == \
        "Matched Data: ' or 1=1 found within ARGS:password: ***"
    assert mask("Matched Data: x found within ARGS:json.user.api_key: abc") .endswith("api_key: ***")
    kept = "Matched Data: <script> found within ARGS:comment: <script>alert(1)</script>"
    assert mask(kept) == kept
    assert len(mask("x" * 1000)) == DATA_LIMIT + 1


@given(st.text())
def test_masking_any_text_never_fails(text: str) -> None:
    assert len(mask(text)) <= max(len(text), DATA_LIMIT + 1)


def test_events_hold_rules_and_masked_data_never_the_body(tmp_path: Path) -> None:
    _need_library()
    log = tmp_path / "events.jsonl"
    gate = Gate(WafConfig(trusted_proxies=TRUSTED, sites={"shop": WafSite()}), str(log), site="shop")
    try:
        body = b"user=admin&password=%27+or+1%3D1--+&note=secret-note-body"
        blocked = gate.decide("POST", "/login?next=/admin", [("Host", "shop.example.test"),
                                                             ("Content-Type", "application/x-www-form-urlencoded"),
                                                             ("Content-Length", str(len(body))),
                                                             ("X-Forwarded-For", "198.51.100.7")],
                              body, "192.0.2.10")
        passed = gate.decide("GET", "/products?id=42", [("Host", "shop.example.test")], b"", "198.51.100.8")
    finally:
        gate.close()
    assert blocked.blocked and blocked.status == 403 and blocked.client == "198.51.100.7"
    assert not passed.blocked and passed.status == 200
    [event] = [json.loads(line) for line in log.read_text().splitlines()]
    assert (event["request_id"], event["site"], event["client"], event["action"]) == (
        blocked.request_id, "shop", "198.51.100.7", "blocked")
    assert event["path"] == "/login?next=…" and 949110 in [r["id"] for r in event["rules"]]
    text = log.read_text()
    assert "or 1=1" not in text and "secret-note-body" not in text and "***" in text
    assert oct(log.stat().st_mode & 0o777) == "0o600"
    assert blocked.request_id in gate.block_body(blocked).decode()


def test_detection_only_records_without_blocking(tmp_path: Path) -> None:
    _need_library()
    log = tmp_path / "events.jsonl"
    gate = Gate(WafConfig(mode="detect"), str(log))
    try:
        seen = gate.decide("GET", "/p?id=1%27%20or%20%271%27=%271", [("Host", "a.test")], b"", "198.51.100.9")
    finally:
        gate.close()
    assert not seen.blocked and seen.status == 200
    assert json.loads(log.read_text())["action"] == "detected"
