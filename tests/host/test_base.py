"""The host layer keeps --root reads inside the root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hostguard.findings import SkipReason
from hostguard.host.base import FileMissing, HostError, RootHost, Unavailable


def test_absolute_symlink_resolves_inside_root(tmp_path: Path) -> None:
    (tmp_path / "etc/alternatives").mkdir(parents=True)
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/real").write_text("inside")
    os.symlink("/usr/bin/real", tmp_path / "etc/alternatives/tool")
    host = RootHost(str(tmp_path))
    assert host.read_text("/etc/alternatives/tool") == "inside"


def test_dotdot_and_links_cannot_escape(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    os.symlink("../../../../etc/hostname", tmp_path / "etc/escape")
    os.symlink("/etc/shadow", tmp_path / "etc/abs")
    host = RootHost(str(tmp_path))
    with pytest.raises(FileMissing):
        host.read_text("/etc/escape")  # resolves to <root>/etc/hostname, which the tree lacks
    with pytest.raises(FileMissing):
        host.read_text("/etc/abs")
    with pytest.raises(FileMissing):
        host.read_text("/../../etc/passwd")


def test_relative_rpm_style_link(tmp_path: Path) -> None:
    (tmp_path / "usr/lib/sysimage/rpm").mkdir(parents=True)
    (tmp_path / "usr/lib/sysimage/rpm/Packages").write_text("db")
    (tmp_path / "var/lib").mkdir(parents=True)
    os.symlink("../../usr/lib/sysimage/rpm", tmp_path / "var/lib/rpm")
    assert RootHost(str(tmp_path)).read_text("/var/lib/rpm/Packages") == "db"


def test_link_loop_is_an_error(tmp_path: Path) -> None:
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    with pytest.raises(HostError, match="too many levels"):
        RootHost(str(tmp_path)).read_text("/a")


def test_directory_and_fifo_are_not_read(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    os.mkfifo(tmp_path / "fifo")
    host = RootHost(str(tmp_path))
    with pytest.raises(HostError, match="not a regular file"):
        host.read_text("/d")
    with pytest.raises(HostError, match="not a regular file"):
        host.read_text("/fifo")


def test_live_facts_unavailable_under_root(tmp_path: Path) -> None:
    host = RootHost(str(tmp_path))
    with pytest.raises(Unavailable) as exc:
        host.run(["nft", "list", "ruleset"])
    assert exc.value.reason == SkipReason.LIVE_ONLY


def test_missing_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(HostError, match="not a directory"):
        RootHost(str(tmp_path / "nope"))
