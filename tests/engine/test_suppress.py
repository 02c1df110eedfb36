"""Suppression is a layer over findings: by id, alias, family or fingerprint; a rule naming nothing is an error.
Accepted fingerprints leave the findings the same way; a fingerprint given by hand must name exactly one."""

from __future__ import annotations

import pytest

from hostguard.engine.suppress import (
    FingerprintError,
    SuppressError,
    SuppressRule,
    apply,
    apply_accepted,
    resolve,
    resolve_fingerprints,
)
from hostguard.findings import Finding

A1 = Finding("ssh.default_port", "ssh", "low", "port 22", {"kind": "config", "path": "/etc/ssh/sshd_config"})
A2 = Finding("ssh.max_auth_tries", "ssh", "low", "6 tries", {"kind": "config", "path": "/etc/ssh/sshd_config"})
B1 = Finding("accounts.duplicate", "accounts", "high", "dup", {"kind": "user", "user": "bob"})
B2 = Finding("accounts.duplicate", "accounts", "high", "dup", {"kind": "user", "user": "eve"})
CANON = {"ssh.default_port": "ssh.default_port", "ssh.port22": "ssh.default_port",
         "accounts.duplicate": "accounts.duplicate", "ssh.max_auth_tries": "ssh.max_auth_tries"}


def _resolve(*rules: SuppressRule) -> list[SuppressRule]:
    return resolve(rules, CANON.get, ["ssh", "accounts"])


def test_by_id_by_family_and_by_fingerprint() -> None:
    kept, n = apply([A1, A2, B1, B2], _resolve(SuppressRule("ssh.*"), SuppressRule("accounts.duplicate", B2.fingerprint)))
    assert (kept, n) == ([B1], 3)


def test_an_alias_suppresses_the_renamed_check() -> None:
    assert _resolve(SuppressRule("ssh.port22", reason="moved behind a VPN")) == [
        SuppressRule("ssh.default_port", None, "moved behind a VPN")]
    assert apply([A1, A2], _resolve(SuppressRule("ssh.port22"))) == ([A2], 1)


@pytest.mark.parametrize("rule_id", ["ssh.defualt_port", "sshh.*", ""])
def test_a_rule_naming_nothing_is_an_error(rule_id: str) -> None:
    with pytest.raises(SuppressError, match=f"'{rule_id}' names no check"):
        _resolve(SuppressRule(rule_id))


def test_no_rules_keep_everything() -> None:
    assert apply([A1, B1], []) == ([A1, B1], 0)


def test_accepted_fingerprints_leave_the_findings_and_are_returned() -> None:
    kept, hidden = apply_accepted([A1, B1, B2], {B2.fingerprint, "f" * 32})
    assert (kept, hidden) == ([A1, B1], [B2])
    assert apply_accepted([A1], set()) == ([A1], [])


KNOWN = ["0123456789abcdef0123456789abcdef", "01234567ffffffffffffffffffffffff", "fedcba9876543210fedcba9876543210"]


@pytest.mark.parametrize("given, full", [
    (["0123456789abcdef0123456789abcdef"], ["0123456789abcdef0123456789abcdef"]),
    (["FEDCBA98"], ["fedcba9876543210fedcba9876543210"]),                       # a prefix, any case
    (["012345678", " fedcba98 ", "0123456789"], ["0123456789abcdef0123456789abcdef",  # once each, in order
                                                 "fedcba9876543210fedcba9876543210"]),
])
def test_fingerprints_whole_or_by_unambiguous_prefix(given: list[str], full: list[str]) -> None:
    assert resolve_fingerprints(given, KNOWN, "here") == full


@pytest.mark.parametrize("given, message", [
    ("01234567", "fingerprint prefix 01234567 matches 2 findings (0123456789abcdef0123456789abcdef, "
                 "01234567ffffffffffffffffffffffff): give more digits"),
    ("0123456", "'0123456' is not a fingerprint (8 to 32 hex digits, as a report shows them)"),
    ("ssh.default_port", "'ssh.default_port' is not a fingerprint (8 to 32 hex digits, as a report shows them)"),
    ("0" * 33, f"'{'0' * 33}' is not a fingerprint (8 to 32 hex digits, as a report shows them)"),
    ("abcdef01", "no finding with fingerprint abcdef01 in this test"),
    ("ab\ncdef01", "'ab\\ncdef01' is not a fingerprint (8 to 32 hex digits, as a report shows them)"),
])
def test_a_fingerprint_that_names_no_single_finding_is_an_error(given: str, message: str) -> None:
    with pytest.raises(FingerprintError) as raised:
        resolve_fingerprints(["fedcba98", given], KNOWN, "in this test")
    assert str(raised.value) == message and "\n" not in str(raised.value)
