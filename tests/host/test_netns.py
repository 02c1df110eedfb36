"""private_netns: a namespace that exists only inside its block, whatever happens, and starts empty."""

from __future__ import annotations

import os
import subprocess

import pytest

from hostguard.findings import SkipReason
from hostguard.host import netns as netns_mod
from hostguard.host.base import Unavailable
from hostguard.host.netns import NetnsError, private_netns
from tests.conftest import need_root, need_tool


def _exists(name: str) -> bool:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return name in {line.split()[0] for line in listing.splitlines() if line.strip()}


def test_namespace_exists_inside_the_block_and_is_gone_after() -> None:
    need_root("network namespaces")
    need_tool("ip")
    with private_netns("hgtest", "testing") as ns:
        assert ns.name.startswith("hgtest") and _exists(ns.name)
        links = ns.check(["ip", "-o", "link", "show"], "ip link")
        assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
        assert ns.check(["ip", "-o", "addr", "show", "scope", "global"], "ip addr") == ""
    assert not _exists(ns.name)


def test_namespace_is_deleted_when_the_block_raises() -> None:
    need_root("network namespaces")
    need_tool("ip")
    with pytest.raises(RuntimeError, match="boom"), private_netns("hgtest", "testing") as ns:
        assert _exists(ns.name)
        raise RuntimeError("boom")
    assert not _exists(ns.name)


def test_failed_command_and_missing_tool_inside() -> None:
    need_root("network namespaces")
    need_tool("ip")
    with private_netns("hgtest", "testing") as ns:
        with pytest.raises(NetnsError, match="^ip route: "):
            ns.check(["ip", "route", "get", "192.0.2.1"], "ip route")  # no route in an empty namespace
        with pytest.raises(Unavailable) as info:
            ns.run(["hostguard-no-such-tool"])
        assert info.value.reason == SkipReason.TOOL_MISSING
    assert not _exists(ns.name)


def test_two_namespaces_get_different_names() -> None:
    need_root("network namespaces")
    need_tool("ip")
    with private_netns("hgtest", "testing") as a, private_netns("hgtest", "testing") as b:
        assert a.name != b.name and _exists(a.name) and _exists(b.name)


def test_not_root_is_a_skip_reason_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(Unavailable) as info, private_netns("hgtest", "loading /etc/nftables.conf"):
        pytest.fail("the block must not run")
    assert info.value.reason == SkipReason.NOT_ROOT
    assert info.value.detail == "loading /etc/nftables.conf needs root"


def test_missing_ip_is_tool_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns_mod, "system_which", lambda name: None)
    with pytest.raises(Unavailable) as info, private_netns("hgtest", "testing"):
        pytest.fail("the block must not run")
    assert info.value.reason == SkipReason.TOOL_MISSING


def test_prefix_must_be_a_short_plain_name() -> None:
    with pytest.raises(ValueError, match="prefix"), private_netns("../x", "testing"):
        pass
