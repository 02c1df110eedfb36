"""The finding contract: fingerprints, severities, the bytes policy."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostguard.findings import Finding, Severity, fingerprint, portable


def test_fingerprint_depends_on_check_and_target_only() -> None:
    a = Finding("ssh.x", "ssh", Severity.LOW, "one", {"kind": "config", "path": "/etc/ssh/sshd_config"},
                evidence={"pid": 1})
    b = Finding("ssh.x", "ssh", Severity.HIGH, "two", {"path": "/etc/ssh/sshd_config", "kind": "config"},
                evidence={"pid": 2})
    c = Finding("ssh.y", "ssh", Severity.LOW, "one", {"kind": "config", "path": "/etc/ssh/sshd_config"})
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != c.fingerprint
    assert a.fingerprint == fingerprint("ssh.x", {"kind": "config", "path": "/etc/ssh/sshd_config"})


def test_target_kind_is_typed() -> None:
    with pytest.raises(ValueError, match="target kind"):
        Finding("a.b", "a", Severity.LOW, "t", {"kind": "banana"})


def test_non_utf8_name_is_written_readable_and_exact() -> None:
    raw = b"caf\xe9"
    name = raw.decode("utf-8", "surrogateescape")
    f = Finding("accounts.x", "accounts", "high", f"user {name}", {"kind": "user", "user": name})
    data = f.to_dict()
    assert data["target"]["user"] == {"text": "caf\\xe9", "base64": base64.b64encode(raw).decode()}
    assert data["title"] == "user caf\\xe9"
    json.dumps(data, ensure_ascii=False).encode("utf-8")  # no lone surrogates


@given(st.binary(max_size=64))
def test_portable_never_emits_surrogates(raw: bytes) -> None:
    for value in (raw, raw.decode("utf-8", "surrogateescape")):
        out = portable({"v": value, "l": [value]})
        text = json.dumps(out, ensure_ascii=False)
        text.encode("utf-8")
        got = out["v"]
        exact = got.encode() if isinstance(got, str) else base64.b64decode(got["base64"])
        assert exact == raw
