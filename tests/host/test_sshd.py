"""The sshd config parser against the real ``sshd -T``: same files, same answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostguard.host.base import Host
from hostguard.host.sshd import ConnSpec, evaluate, match_applies, parse_files
from tests.sshd_helpers import prepare_sshd, sshd_dump

KEYS = ("port", "permitrootlogin", "passwordauthentication", "kbdinteractiveauthentication", "usepam",
        "permitemptypasswords", "maxauthtries", "ciphers", "macs", "kexalgorithms", "authenticationmethods",
        "pubkeyauthentication")

CASES = {
    "defaults": ("", {}),
    "first_value_wins_and_include_order": (
        "Include {d}/conf.d/*.conf\nPasswordAuthentication yes\nPort 2200\nPort 2201\nMaxAuthTries 9\n",
        {"10-a.conf": "PasswordAuthentication no\nMaxAuthTries 3\n", "20-b.conf": "MaxAuthTries 5\n"}),
    "aliases_and_equals": (
        "ChallengeResponseAuthentication=no\nPermitRootLogin prohibit-password\nUsePAM yes\n", {}),
    "list_modifiers": (
        "Ciphers +aes128-cbc\nMACs -hmac-sha1*,umac-64*\nKexAlgorithms ^diffie-hellman-group14-sha1\n", {}),
    "match_blocks": (
        "PasswordAuthentication no\nPermitRootLogin no\nMatch Address 192.0.2.0/24\n  PermitRootLogin yes\n"
        "  PasswordAuthentication yes\nMatch User root\n  PermitRootLogin without-password\n"
        "Match User alice,!bob Address 198.51.100.*\n  MaxAuthTries 2\n", {}),
    "include_inside_match": (
        "Match User root\n  Include {d}/conf.d/*.conf\nMatch all\n  X11Forwarding no\n",
        {"root.conf": "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"}),
}
SPECS = [None, "user=root,host=a.test,addr=192.0.2.10,laddr=127.0.0.1,lport=22",
         "user=alice,host=a.test,addr=198.51.100.7,laddr=127.0.0.1,lport=22",
         "user=bob,host=a.test,addr=203.0.113.5,laddr=127.0.0.1,lport=22"]


def _spec(text: str | None) -> ConnSpec | None:
    if text is None:
        return None
    kv = dict(p.split("=", 1) for p in text.split(","))
    return ConnSpec(kv["user"], kv["addr"], kv["host"], kv["laddr"], int(kv["lport"]))


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("spec", SPECS, ids=["global", "root", "alice", "bob"])
def test_parser_agrees_with_sshd_T(tmp_path: Path, case: str, spec: str | None) -> None:
    key = prepare_sshd(tmp_path)
    main, includes = CASES[case]
    (tmp_path / "conf.d").mkdir()
    for name, text in includes.items():
        (tmp_path / "conf.d" / name).write_text(text)
    config = tmp_path / "sshd_config"
    config.write_text(f"HostKey {key}\n" + main.format(d=tmp_path))
    real = sshd_dump(config, spec)
    ours = evaluate(parse_files(Host("/"), str(config)), _spec(spec))
    for k in KEYS:
        assert list(ours.all(k)) == real[k], k


def test_match_criteria_negation_and_cidr() -> None:
    spec = ConnSpec("alice", "192.0.2.44")
    assert match_applies(("User", "alice,!bob"), spec)
    assert not match_applies(("User", "*,!alice"), spec)
    assert match_applies(("Address", "192.0.2.0/24"), spec)
    assert not match_applies(("Address", "192.0.2.0/24", "User", "bob"), spec)
    assert not match_applies(("User", "alice"), None)


@given(st.text(max_size=400))
def test_parser_never_raises_on_garbage(tmp_path_factory, text: str) -> None:
    path = tmp_path_factory.mktemp("g") / "sshd_config"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    parsed = parse_files(Host("/"), str(path))
    view = evaluate(parsed, ConnSpec("root", "192.0.2.1"))
    assert view.get("port")
