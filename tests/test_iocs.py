"""The IOC format: loading, errors naming file and line, expiry, and matching."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.config import ConfigError
from hostguard.iocs import IocError, IocSet, load_file, parse_iocs, shipped
from tests.conftest import make_config

TODAY = dt.date(2026, 12, 3)

LIST = """source = "tests"

[[ioc]]
type = "ip"
value = "192.0.2.7"

[[ioc]]
type = "cidr"
value = "198.51.100.0/25"
comment = "a bad network"

[[ioc]]
type = "domain"
value = "Pool.Example.TEST."

[[ioc]]
type = "url"
value = "http://dl.example.test/drop/"

[[ioc]]
type = "sha256"
value = "%s"

[[ioc]]
type = "ip"
value = "2001:db8::66"
expiry = 2026-01-01
""" % ("AB" * 32)


def _set() -> IocSet:
    return IocSet.build(parse_iocs(LIST, "list.toml"), TODAY)


def test_entries_are_normalised_and_matched() -> None:
    s = _set()
    assert s.match_ip("192.0.2.7") is not None and s.match_ip("192.0.2.8") is None
    assert s.match_ip("::ffff:192.0.2.7") is not None  # IPv4-mapped is the same address
    hit = s.match_ip("198.51.100.127")
    assert hit is not None and hit.comment == "a bad network" and hit.origin == "list.toml:7"
    assert s.match_ip("198.51.100.128") is None
    assert s.match_domain("pool.example.test") is not None
    assert s.match_domain("EU.pool.example.test.") is not None
    assert s.match_domain("notpool.example.test") is None and s.match_domain("example.test") is None
    assert s.match_url("HTTP://dl.example.test/drop/x.sh") is not None
    assert s.match_url("http://dl.example.test/dropped") is None
    assert s.match_url("https://a.pool.example.test/") is not None  # by its host's domain entry
    assert s.match_url("http://192.0.2.7:8080/x") is not None       # by its host's IP entry
    assert s.match_sha256("ab" * 32) is not None and s.match_sha256("ac" * 32) is None


def test_expired_entries_are_ignored_with_a_note() -> None:
    s = _set()
    assert s.match_ip("2001:db8::66") is None
    assert s.notes == ("list.toml:24: ip 2001:db8::66 expired on 2026-01-01 and is ignored",)
    fresh = IocSet.build(parse_iocs(LIST, "list.toml"), dt.date(2025, 12, 31))
    assert fresh.match_ip("2001:db8::66") is not None and fresh.notes == ()


@pytest.mark.parametrize(("entry", "message"), [
    ('type = "ip"\nvalue = "192.0.2.300"', "list.toml:4: '192.0.2.300' is not an IP address"),
    ('type = "cidr"\nvalue = "192.0.2.1/24"', "list.toml:4: '192.0.2.1/24' is not a network"),
    ('type = "domain"\nvalue = "test"', "at least two labels"),
    ('type = "url"\nvalue = "dl.example.test/x"', "not a URL"),
    ('type = "sha256"\nvalue = "abc"', "not a SHA-256"),
    ('type = "md5"\nvalue = "abc"', "type 'md5' is not one of"),
    ('type = "ip"\nvalue = "192.0.2.1"\nexpiry = "soon"', "'expiry' must be a TOML date"),
    ('type = "ip"\nvalue = "192.0.2.1"\ncolour = "red"', "unknown key 'colour'"),
])
def test_a_malformed_entry_names_file_and_line(entry: str, message: str) -> None:
    text = '[[ioc]]\ntype = "ip"\nvalue = "192.0.2.1"\n[[ioc]]\n' + entry + "\n"
    with pytest.raises(IocError, match="IOC list list.toml") as err:
        parse_iocs('source = "s"\n' + text.replace("[[ioc]]\ntype", "[[ioc]]\ntype", 1), "list.toml")
    assert message.split(": ", 1)[-1] in str(err.value)
    if message.startswith("list.toml:"):
        assert str(err.value).startswith("IOC list list.toml:5")  # the second [[ioc]] header


def test_an_entry_without_a_source_is_refused() -> None:
    with pytest.raises(IocError, match="'source' is required"):
        parse_iocs('[[ioc]]\ntype = "ip"\nvalue = "192.0.2.1"\n', "x.toml")


def test_a_broken_user_list_is_a_configuration_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('source = "me"\n[[ioc]]\ntype = "ip"\nvalue = "nope"\n')
    with pytest.raises(ConfigError, match=f"IOC list {bad}:2"):
        make_config(connections={"ioc_lists": [str(bad)]})
    with pytest.raises(ConfigError, match="not an absolute path"):
        make_config(connections={"ioc_lists": ["bad.toml"]})
    good = tmp_path / "good.toml"
    good.write_text('source = "me"\n[[ioc]]\ntype = "ip"\nvalue = "192.0.2.9"\n')
    make_config(connections={"ioc_lists": [str(good)]})
    assert load_file(str(good))[0].value == "192.0.2.9"


def test_the_shipped_lists_load_and_every_entry_has_a_source() -> None:
    entries = shipped()
    assert entries and all(e.source.startswith("https://") for e in entries)
    s = IocSet.build(entries, TODAY)
    assert s.match_domain("pool.supportxmr.com") is not None and s.match_domain("supportxmr.com.test") is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_the_loader_never_fails_other_than_with_iocerror(text: str) -> None:
    try:
        parse_iocs(text, "fuzz.toml")
    except IocError as exc:
        assert str(exc).startswith("IOC list fuzz.toml")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["ip", "cidr", "domain", "url", "sha256", "other"]), st.text(max_size=80),
       st.text(max_size=40))
def test_any_entry_loads_or_is_refused_with_its_line(kind: str, value: str, source: str) -> None:
    import json
    text = f'[[ioc]]\ntype = {json.dumps(kind)}\nvalue = {json.dumps(value)}\nsource = {json.dumps(source)}\n'
    try:
        [ioc] = parse_iocs(text, "f.toml")
    except IocError as exc:
        assert str(exc).startswith("IOC list f.toml")
        return
    s = IocSet.build([ioc], TODAY)
    matcher = {"ip": s.match_ip, "cidr": lambda v: s.match_ip(v.split("/")[0]), "domain": s.match_domain,
               "url": s.match_url, "sha256": s.match_sha256}[kind]
    assert matcher(ioc.value) == ioc
