"""Suppression is a layer over findings: by id, alias, family or fingerprint; a rule naming nothing is an error."""

from __future__ import annotations

import pytest

from hostguard.engine.suppress import SuppressError, SuppressRule, apply, resolve
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
