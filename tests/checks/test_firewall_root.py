"""The firewall family under --root: the tree's boot-time configuration, loaded by the real nft."""

from __future__ import annotations

import json
from pathlib import Path

from hostguard.cli import main
from hostguard.host.base import RootHost
from tests.conftest import need_root, need_tool, run_one
from tests.ufw_helpers import write_ufw_config


def _scan(capsys, tmp_path: Path, tree: Path) -> dict:
    code = main(["--state", str(tmp_path / "s"), "scan", "--root", str(tree), "--only", "firewall", "--format", "json"])
    assert code in (0, 1)
    return json.loads(capsys.readouterr().out)


def test_nftables_conf_with_include_inside_the_tree(capsys, tmp_path: Path, clean_tree: Path) -> None:
    need_tool("nft", "ip")
    need_root("loading nftables.conf into a private namespace")
    (clean_tree / "etc/nftables.d").mkdir()
    (clean_tree / "etc/nftables.d/open.nft").write_text(
        "table ip extra {\n  chain input {\n    type filter hook input priority 10; policy accept;\n  }\n}\n")
    conf = clean_tree / "etc/nftables.conf"
    conf.write_text(conf.read_text().replace("policy drop;", "policy accept;") + 'include "/etc/nftables.d/*.nft"\n')
    report = _scan(capsys, tmp_path, clean_tree)
    [finding] = [f for f in report["findings"] if f["id"] == "firewall.default_allow"]
    assert finding["title"] == "any new listening port would be reachable from anyone over IPv4 and IPv6"
    assert "inet filter input: policy accept" in finding["evidence"]["decided_by"]


def test_broken_nftables_conf_is_reported_not_guessed(capsys, tmp_path: Path, clean_tree: Path) -> None:
    need_tool("nft", "ip")
    need_root("loading nftables.conf into a private namespace")
    (clean_tree / "etc/nftables.conf").write_bytes(b"table inet filter {\n chain input { \xff garbage }\n")
    report = _scan(capsys, tmp_path, clean_tree)
    assert [f for f in report["findings"] if f["id"].startswith("firewall.")] == []
    errors = [s for s in report["skipped"] if s["reason"] == "error"]
    assert errors and errors[0]["detail"].startswith("nft cannot load /etc/nftables.conf")


def test_disabled_nftables_service_means_no_firewall(capsys, tmp_path: Path, clean_tree: Path) -> None:
    (clean_tree / "etc/systemd/system/sysinit.target.wants/nftables.service").unlink()
    report = _scan(capsys, tmp_path, clean_tree)
    [finding] = [f for f in report["findings"] if f["id"] == "firewall.default_allow"]
    assert finding["evidence"]["notes"] == ["no firewall configuration is loaded at boot"]


def test_ufw_enabled_tree_is_evaluated_with_ufws_own_loader(capsys, tmp_path: Path, clean_tree: Path) -> None:
    need_root("running ufw-init in a private namespace")
    (clean_tree / "etc/systemd/system/sysinit.target.wants/nftables.service").unlink()
    write_ufw_config(clean_tree / "etc", ["-A ufw-user-input -p tcp --dport 2222 -j ACCEPT"],
                     ["-A ufw-user-input -p tcp --dport 2222 -j ACCEPT"])
    (clean_tree / "etc/ufw/before.init").write_text("#!/bin/sh\ntouch /tmp/hostguard-must-not-run\n")
    (clean_tree / "etc/ufw/before.init").chmod(0o755)
    report = _scan(capsys, tmp_path, clean_tree)
    assert report["skipped"] == [] or {s["reason"] for s in report["skipped"]} == {"live_only"}
    assert [f for f in report["findings"] if f["id"] == "firewall.default_allow"] == []  # ufw drops by default
    assert not Path("/tmp/hostguard-must-not-run").exists()
    (clean_tree / "etc/default/ufw").write_text('DEFAULT_INPUT_POLICY="ACCEPT"\n$(touch /tmp/hostguard-must-not-run)\n')
    report = _scan(capsys, tmp_path, clean_tree)
    [finding] = [f for f in report["findings"] if f["id"] == "firewall.default_allow"]
    assert "/etc/ufw (ufw)" in finding["target"]["path"]
    assert not Path("/tmp/hostguard-must-not-run").exists()


DROP_ALL = "table inet tree_guard {\n  chain input {\n    type filter hook input priority 10; policy drop;\n  }\n}\n"
EMPTY = "table inet elsewhere {\n}\n"


def _open_conf(tree: Path, include: str) -> None:
    conf = tree / "etc/nftables.conf"
    conf.write_text(conf.read_text().replace("policy drop;", "policy accept;") + f'include "{include}"\n')


def _default_allow(capsys, tmp_path: Path, tree: Path) -> list[dict]:
    report = _scan(capsys, tmp_path, tree)
    assert [s for s in report["skipped"] if s["reason"] != "live_only"] == []
    return [f for f in report["findings"] if f["id"] == "firewall.default_allow"]


def test_include_symlink_out_of_the_tree_is_followed_inside_it(capsys, tmp_path: Path, clean_tree: Path) -> None:
    """A tree's /etc/nftables.d/guard.nft links to an absolute path. The real nft would open that path on
    this machine (here: a harmless empty table); resolved inside the tree, it is the tree's drop-all table."""
    need_tool("nft", "ip")
    need_root("loading nftables.conf into a private namespace")
    outside = tmp_path / "outside" / "guard.nft"     # on this machine, outside the tree
    outside.parent.mkdir()
    outside.write_text(EMPTY)
    inside = clean_tree / str(outside).lstrip("/")    # the same path inside the tree
    inside.parent.mkdir(parents=True)
    inside.write_text(DROP_ALL)
    (clean_tree / "etc/nftables.d").mkdir()
    (clean_tree / "etc/nftables.d/guard.nft").symlink_to(outside)
    _open_conf(clean_tree, "/etc/nftables.d/*.nft")
    assert _default_allow(capsys, tmp_path, clean_tree) == []  # the tree's own file: drop by default
    inside.write_text(EMPTY)                          # near miss: the tree's file opens nothing either
    [finding] = _default_allow(capsys, tmp_path, clean_tree)
    assert "inet filter input: policy accept" in finding["evidence"]["decided_by"]


def test_relative_include_and_nested_include_resolve_in_the_tree(capsys, tmp_path: Path, clean_tree: Path) -> None:
    """"./x" starts at nftables.service's working directory (/), a bare name at nft's include path (/etc);
    a directory symlink with ``..`` stays inside the root; an include loop is an error, not a hang."""
    need_tool("nft", "ip")
    need_root("loading nftables.conf into a private namespace")
    (clean_tree / "srv/fw").mkdir(parents=True)
    (clean_tree / "srv/fw/guard.nft").write_text(DROP_ALL)
    (clean_tree / "etc/fw.d").symlink_to("../../../../../../../srv/fw")  # .. stops at the tree's root
    (clean_tree / "etc/outer.nft").write_text('include "./etc/fw.d/guard.nft"\n')
    _open_conf(clean_tree, "outer.nft")
    assert _default_allow(capsys, tmp_path, clean_tree) == []
    (clean_tree / "srv/fw/guard.nft").write_text('include "/etc/outer.nft"\n')
    report = _scan(capsys, tmp_path, clean_tree)
    errors = {s["detail"] for s in report["skipped"] if s["reason"] == "error"}
    assert len(errors) == 1 and "includes nested deeper than" in errors.pop()


def test_a_tree_that_is_no_os_is_not_looked_at(tmp_path: Path) -> None:
    """An empty directory or a source checkout has no boot-time firewall: skipped, not "no default deny".
    Near miss: the same tree with /etc/os-release is an OS without a firewall, which is a finding."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src/main.py").write_text("print('hello')\n")
    found, skipped = run_one("firewall.default_allow", RootHost(str(tmp_path)))
    assert found == [] and [(s.reason, s.detail.split(":")[0]) for s in skipped] == [("unsupported", "not an OS tree")]
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    found, skipped = run_one("firewall.default_allow", RootHost(str(tmp_path)))
    assert skipped == [] and [f.id for f in found] == ["firewall.default_allow"]
