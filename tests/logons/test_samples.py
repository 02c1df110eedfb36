"""Every annotated sample line gives exactly the events written beside it (which line, service, outcome,
user, address, port, method, count and time), and every near miss gives none."""

from __future__ import annotations

from typing import Any

import pytest

from tests.logons.samples import cases, expected, run_case

CASES = cases()


@pytest.mark.parametrize(("case", "settings"), [(c, s) for _, c, s in CASES], ids=[i for i, _, _ in CASES])
def test_sample_case(case: dict[str, Any], settings: dict[str, Any]) -> None:
    events, _ = run_case(case, settings)
    key = ("line", "service", "outcome", "count", "user", "ip", "port", "method", "time")
    assert [{k: e[k] for k in key} for e in events] == [{k: e[k] for k in key} for e in expected(case)], case["why"]


def test_every_family_has_hits_and_near_misses() -> None:
    families: dict[str, set[bool]] = {}
    for ident, case, _ in CASES:
        assert case["why"].strip(), ident
        families.setdefault(ident.split(":")[0], set()).add(bool(case["expect"]))
    assert {f for f, kinds in families.items() if kinds != {True, False}} <= {"formats"}, families
    assert {"sshd", "ftp", "mail", "databases", "local", "formats"} <= set(families)


def test_every_service_appears_in_the_samples() -> None:
    services = {e.get("service", "sshd") for _, case, _ in CASES for e in case["expect"]}
    assert services == {"sshd", "vsftpd", "proftpd", "pure-ftpd", "dovecot", "postfix", "mysql", "postgresql",
                        "su", "sudo", "login"}
