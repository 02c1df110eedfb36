"""Pending security updates against a real local ``file:`` apt repository.

Two tiny .deb packages per name are built here with ``dpkg-deb``, served from two flat archives (a
``Debian-Security``/``bookworm-security`` one and a plain ``stable`` one), and apt is pointed at them through
a private ``APT_CONFIG`` (its own state, cache, sources, status file and an empty apt.conf.d, so the host's
hooks never run); ``apt-get update`` runs only under that configuration, and the host's apt directories
are compared before and after.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostguard.findings import SkipReason
from hostguard.remediation import Action
from hostguard.vulns.pending import (
    CHECK_ID,
    LISTS_CHECK_ID,
    PendingResult,
    is_security_origin,
    parse_kept_back,
    parse_policy,
    parse_simulation,
    pending_security_updates,
    refresh_step,
    upgrade_argv,
)

HOST_APT = ("/var/lib/apt", "/var/lib/apt/lists", "/var/lib/apt/lists/partial", "/var/lib/apt/extended_states",
            "/var/cache/apt", "/var/cache/apt/archives", "/var/lib/dpkg/status", "/etc/apt",
            "/etc/apt/sources.list.d")
INSTALLED = {"hg-test-tool": "1.0", "hg-other": "2.0", "hg-both": "3.0", "hg-current": "4.0", "hg-needs": "5.0",
             "hg-superseded": "6.0", "hg-behind": "7.1", "hg-held": "8.0"}
HELD = {"hg-held"}
SECURITY = {"hg-test-tool": "1.1", "hg-both": "3.1", "hg-needs": "5.1", "hg-newdep": "1.0", "hg-superseded": "6.1",
            "hg-behind": "7.0", "hg-held": "8.1"}
MAIN = {"hg-other": "2.1", "hg-both": "3.1", "hg-current": "4.0", "hg-superseded": "6.2", "hg-behind": "7.2"}
DEPENDS = {("hg-needs", "5.1"): "hg-newdep"}  # the security upload needs a package not installed yet


def _host_apt_state() -> dict[str, tuple[int, int, tuple[str, ...]]]:
    out = {}
    for p in HOST_APT:
        if os.path.lexists(p):
            st_ = os.lstat(p)
            names = tuple(sorted(os.listdir(p))) if os.path.isdir(p) else ()
            out[p] = (st_.st_mtime_ns, st_.st_ctime_ns, names)
    return out


def private_apt(base: Path, archives: tuple[Path, ...], status: Path, extra: dict[str, object] | None = None,
                dpkg_options: tuple[str, ...] = ()) -> Path:
    """An APT_CONFIG file of apt's own under ``base`` (state, cache, sources naming ``archives`` as trusted
    flat ``file:`` repositories, an empty apt.conf.d so the host's hooks never run), reading dpkg's
    ``status`` and passing ``dpkg_options`` to dpkg."""
    for d in ("state/lists/partial", "cache/archives/partial", "etc/apt.conf.d", "etc/preferences.d", "log"):
        (base / d).mkdir(parents=True, exist_ok=True)
    (base / "etc/sources.list").write_text("".join(f"deb [trusted=yes] file:{a} ./\n" for a in archives))
    settings: dict[str, object] = {
        "Dir::State": base / "state", "Dir::State::Lists": base / "state/lists",
        "Dir::State::status": status, "Dir::State::extended_states": base / "state/extended_states",
        "Dir::Cache": base / "cache", "Dir::Etc": base / "etc", "Dir::Etc::SourceList": base / "etc/sources.list",
        "Dir::Etc::SourceParts": base / "etc/sources.list.d", "Dir::Etc::Parts": base / "etc/apt.conf.d",
        "Dir::Etc::main": "/dev/null", "Dir::Etc::Preferences": base / "etc/preferences",
        "Dir::Etc::PreferencesParts": base / "etc/preferences.d", "Dir::Log": base / "log",
        "APT::Sandbox::User": "root", "Acquire::Languages": "none", **(extra or {})}
    conf = base / "apt.conf"
    conf.write_text("".join(f'{k} "{v}";\n' for k, v in settings.items())
                    + ("DPkg::Options {" + "".join(f' "{o}";' for o in dpkg_options) + " };\n" if dpkg_options else ""))
    return conf


def _deb(build: Path, archive: Path, name: str, version: str) -> None:
    root = build / f"{name}_{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: Test <t@example.test>\n"
        + (f"Depends: {DEPENDS[name, version]}\n" if (name, version) in DEPENDS else "")
        + "Description: hostguard test package\n")
    subprocess.run(["dpkg-deb", "-Zgzip", "--root-owner-group", "--build", str(root),
                    str(archive / f"{name}_{version}_all.deb")], check=True, capture_output=True)


def _archive(base: Path, name: str, packages: dict[str, str], release: str) -> Path:
    archive = base / name
    archive.mkdir()
    for pkg, version in packages.items():
        built = base / "debs" / f"{pkg}_{version}_all.deb"
        if not built.exists():  # one .deb per version, as an archive's point release copies the security one
            built.parent.mkdir(exist_ok=True)
            _deb(base / "build", built.parent, pkg, version)
        shutil.copy(built, archive / built.name)
    scan = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=archive, check=True,
                          capture_output=True, text=True)
    (archive / "Packages").write_text(scan.stdout)
    (archive / "Release").write_text(release)
    return archive


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private apt configuration over two local archives, updated once; yields the APT_CONFIG file."""
    for tool in ("dpkg-deb", "dpkg-scanpackages", "apt-get"):
        assert shutil.which(tool), f"{tool} is needed (Debian: dpkg-dev, apt)"
    base = tmp_path_factory.mktemp("aptrepo")
    sec = _archive(base, "security", SECURITY, "Origin: Debian\nLabel: Debian-Security\nSuite: bookworm-security\n"
                   "Codename: bookworm-security\nVersion: 12\n")
    main = _archive(base, "main", MAIN, "Origin: Debian\nLabel: Debian\nSuite: stable\nCodename: bookworm\n"
                    "Version: 12.8\n")
    (base / "status").write_text("".join(
        f"Package: {n}\nStatus: {'hold' if n in HELD else 'install'} ok installed\nVersion: {v}\nArchitecture: all\n"
        f"Maintainer: Test <t@example.test>\nDescription: x\n\n" for n, v in INSTALLED.items()))
    conf = private_apt(base, (sec, main), base / "status", {"Debug::NoLocking": "1"})
    before = _host_apt_state()
    env = {**os.environ, "APT_CONFIG": str(conf), "LC_ALL": "C"}
    # the one apt-get update of these tests: under the private configuration only
    subprocess.run(["apt-get", "update"], env=env, check=True, capture_output=True, timeout=120)
    yield conf
    assert _host_apt_state() == before, "the host's apt state changed"


def test_security_update_from_local_repository_is_reported(repo: Path) -> None:
    result = pending_security_updates(apt_config=repo)
    assert result.available, result.detail
    assert result.command[1:] == ("-s", "-o", "Debug::NoLocking=1", "dist-upgrade")
    by_name = {u.name: u for u in result.updates}
    assert sorted(by_name) == ["hg-both", "hg-held", "hg-needs", "hg-superseded", "hg-test-tool"]
    tool = by_name["hg-test-tool"]
    assert (tool.old, tool.new, tool.arch) == ("1.0", "1.1", "all")
    assert tool.origins == ("Debian-Security:12/bookworm-security",)
    # the same version in both archives: one of its origins is security, so it counts
    assert set(by_name["hg-both"].origins) == {"Debian-Security:12/bookworm-security", "Debian:12.8/stable"}

    finding = next(f for f in result.findings if f.target == {"kind": "package", "name": "hg-test-tool"})
    assert finding.id == CHECK_ID and finding.severity == "medium"
    assert finding.evidence["installed"] == "1.0" and finding.evidence["available"] == "1.1"
    assert finding.evidence["security_origins"] == ["Debian-Security:12/bookworm-security"]
    (step,) = finding.remediation.steps
    assert isinstance(step, Action) and step.action == "upgrade"
    assert dict(step.args) == {"manager": "apt-get", "command": "apt-get install --only-upgrade hg-test-tool",
                               "packages": "hg-test-tool", "to": "1.1"}
    assert upgrade_argv(sorted(by_name)) == ("apt-get", "install", "--only-upgrade", *sorted(by_name))


def test_security_update_needing_a_new_package_is_reported(repo: Path) -> None:
    # `apt-get upgrade` would keep hg-needs back (it needs hg-newdep): dist-upgrade's simulation shows it
    result = pending_security_updates(apt_config=repo)
    (needs,) = [u for u in result.updates if u.name == "hg-needs"]
    assert (needs.old, needs.new) == ("5.0", "5.1")
    assert [(u.name, u.old, u.new) for u in result.new_packages] == [("hg-newdep", None, "1.0")]
    assert all(f.target.get("name") != "hg-newdep" for f in result.findings)


def test_held_package_with_a_security_update_is_reported(repo: Path) -> None:
    # apt-mark hold: the simulation keeps it back and prints no Inst line; apt-cache policy finds 8.1
    result = pending_security_updates(apt_config=repo)
    (held,) = [u for u in result.updates if u.name == "hg-held"]
    assert (held.old, held.new, held.origins, held.kept_back) == (
        "8.0", "8.1", ("Debian-Security:12/bookworm-security",), True)
    finding = next(f for f in result.findings if f.target == {"kind": "package", "name": "hg-held"})
    assert finding.evidence["kept_back"] is True and "apt-mark unhold hg-held" in finding.remediation.summary


def test_point_release_superseding_a_security_version_is_reported(repo: Path) -> None:
    # installed 6.0, security archive 6.1, the stable archive 6.2 (which carries the fix): the candidate
    # comes from stable alone, yet 6.0 lacks a security fix
    result = pending_security_updates(apt_config=repo)
    (sup,) = [u for u in result.updates if u.name == "hg-superseded"]
    assert (sup.old, sup.new, sup.origins) == ("6.0", "6.2", ("Debian:12.8/stable",))
    assert (sup.superseded, sup.superseded_origin) == ("6.1", "Debian-Security:12/bookworm-security")
    finding = next(f for f in result.findings if f.target == {"kind": "package", "name": "hg-superseded"})
    assert finding.evidence["security_version"] == "6.1"
    assert dict(finding.remediation.steps[0].args)["to"] == "6.2"  # type: ignore[union-attr]
    # near miss: installed 7.1 is already past the security archive's 7.0; 7.2 from stable is no security update
    assert [u.name for u in result.other_updates] == ["hg-behind", "hg-other"]


def test_update_only_in_the_non_security_archive_is_not_reported(repo: Path) -> None:
    result = pending_security_updates(apt_config=repo)
    assert [(u.name, u.old, u.new, u.origins) for u in result.other_updates if u.name == "hg-other"] == [
        ("hg-other", "2.0", "2.1", ("Debian:12.8/stable",))]
    assert "hg-other" not in {u.name for u in result.updates}
    assert all(f.target.get("name") != "hg-other" for f in result.findings)
    # hg-current is at the archive's version: nothing pending at all
    assert "hg-current" not in {u.name for u in result.updates + result.other_updates}


def test_the_simulation_takes_options_as_well_as_an_apt_config(repo: Path) -> None:
    # the same private configuration, the status file given again as an -o option: hg-test-tool installed at 1.1
    status = repo.parent / "status-newer"
    status.write_text((repo.parent / "status").read_text().replace("Version: 1.0", "Version: 1.1"))
    result = pending_security_updates(apt_config=repo, options={"Dir::State::status": str(status)})
    assert result.available, result.detail
    assert "hg-test-tool" not in [u.name for u in result.updates] and "hg-both" in [u.name for u in result.updates]
    assert "Dir::State::status=" + str(status) in result.command


def test_how_old_the_lists_are(repo: Path) -> None:
    lists = repo.parent / "state" / "lists"
    newest = max(p.stat().st_mtime for p in lists.iterdir() if "_Packages" in p.name)
    fresh = pending_security_updates(apt_config=repo, now=newest + 86400)
    assert fresh.lists_dir.rstrip("/") == str(lists)       # resolved by apt-config under the same config
    assert fresh.lists_updated == newest and fresh.lists_age_days == 1.0 and not fresh.lists_stale
    assert all(f.id != LISTS_CHECK_ID for f in fresh.findings)

    stale = pending_security_updates(apt_config=repo, now=newest + 10 * 86400, max_list_age_days=7)
    assert stale.lists_stale and stale.lists_age_days == 10.0
    (finding,) = [f for f in stale.findings if f.id == LISTS_CHECK_ID]
    assert finding.severity == "low" and finding.target == {"kind": "path", "path": stale.lists_dir}
    assert "apt-get update" in finding.remediation.summary
    assert finding.remediation.steps == (refresh_step("apt-get", ("apt-get", "update")),)
    assert finding.evidence["age_days"] == 10.0 and finding.evidence["max_age_days"] == 7
    # stale lists still give what they know
    assert {u.name for u in stale.updates} == {"hg-both", "hg-held", "hg-needs", "hg-superseded", "hg-test-tool"}


def test_no_lists_at_all_is_a_finding(repo: Path, tmp_path: Path) -> None:
    result = pending_security_updates(apt_config=repo, lists_dir=str(tmp_path))
    assert result.lists_updated is None and result.lists_stale
    (finding,) = [f for f in result.findings if f.id == LISTS_CHECK_ID]
    assert "no package lists" in finding.title and finding.evidence["lists_updated"] is None


def test_missing_apt_get_is_unavailable(tmp_path: Path) -> None:
    for apt_get in (str(tmp_path / "apt-get"), "hostguard-no-such-apt-get"):
        result = pending_security_updates(apt_get=apt_get)
        assert result == PendingResult(False, SkipReason.TOOL_MISSING, f"{apt_get} not found: not an apt system")
        assert not result.findings and not result.updates


def test_failing_simulation_is_unavailable_with_aptss_error(tmp_path: Path) -> None:
    fake = tmp_path / "apt-get"
    fake.write_text("#!/bin/sh\necho 'Reading package lists...'\n"
                    "echo 'E: Unmet dependencies. Try apt --fix-broken install' >&2\nexit 100\n")
    fake.chmod(0o755)
    result = pending_security_updates(apt_get=str(fake))
    assert not result.available and result.reason == SkipReason.ERROR
    assert result.detail == ("apt-get -s dist-upgrade failed (exit 100): "
                             "E: Unmet dependencies. Try apt --fix-broken install")


def test_parse_real_debian_and_ubuntu_lines() -> None:
    text = """NOTE: This is only a simulation!
Reading package lists...
Inst libc6 [2.36-9+deb12u7] (2.36-9+deb12u8 Debian:12.7/stable, Debian-Security:12/stable-security [amd64]) []
Inst linux-image-6.1.0-26-amd64 (6.1.112-1 Debian-Security:12/stable-security [amd64])
Inst openssl [3.0.2-0ubuntu1.15] (3.0.2-0ubuntu1.18 Ubuntu:22.04/jammy-updates, Ubuntu:22.04/jammy-security [amd64])
Inst libfoo:i386 [1.0] (1.1 localhost [i386])
Remv linux-image-6.1.0-20-amd64 [6.1.85-1]
Conf libc6 (2.36-9+deb12u8 Debian:12.7/stable, Debian-Security:12/stable-security [amd64])
"""
    updates, removals = parse_simulation(text)
    assert [(u.name, u.old, u.new, u.arch) for u in updates] == [
        ("libc6", "2.36-9+deb12u7", "2.36-9+deb12u8", "amd64"),
        ("linux-image-6.1.0-26-amd64", None, "6.1.112-1", "amd64"),
        ("openssl", "3.0.2-0ubuntu1.15", "3.0.2-0ubuntu1.18", "amd64"),
        ("libfoo:i386", "1.0", "1.1", "i386")]
    assert updates[0].security_origins() == ("Debian-Security:12/stable-security",)
    assert updates[2].security_origins() == ("Ubuntu:22.04/jammy-security",)
    assert updates[3].security_origins() == ()
    assert removals == ["linux-image-6.1.0-20-amd64"]


@pytest.mark.parametrize(("origin", "security"), [
    ("Debian-Security:12/stable-security", True), ("Debian-Security:12/bookworm-security", True),
    ("Debian-Security:bookworm-security", True), ("Ubuntu:22.04/jammy-security", True),
    ("UbuntuESM:22.04/jammy-infra-security", True), ("Debian:12.8/stable", False),
    ("Debian:12.8/stable-updates", False), ("Ubuntu:22.04/jammy-updates", False),
    ("Debian Backports:12-backports/stable-backports", False), ("localhost", False),
    ("security.example.test:1/stable", False)])
def test_security_origins(origin: str, security: bool) -> None:
    assert is_security_origin(origin) is security


@given(st.text())
def test_garbage_never_crashes(text: str) -> None:
    updates, removals = parse_simulation(text)
    assert all(u.name and u.new for u in updates)
    assert all(isinstance(r, str) for r in removals)


POLICY_FILES = """Package files:
 100 /var/lib/dpkg/status
     release a=now
 500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
     release v=12,o=Debian,a=oldstable-security,n=bookworm-security,l=Debian-Security,c=main,b=amd64
     origin deb.debian.org
 500 http://deb.debian.org/debian bookworm/main amd64 Packages
     release v=12.15,o=Debian,a=oldstable,n=bookworm,l=Debian,c=main,b=amd64
     origin deb.debian.org
Pinned packages:
"""
POLICY_PACKAGES = """libfoo:
  Installed: 1.0-1
  Candidate: 1.0-3
  Version table:
     1.0-3 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
     1.0-2 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
 *** 1.0-1 100
        100 /var/lib/dpkg/status
libbar:
  Installed: 2.0-2
  Candidate: 2.0-3
  Version table:
     2.0-3 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
 *** 2.0-2 100
        100 /var/lib/dpkg/status
     2.0-1 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
"""


def test_parse_policy() -> None:
    assert parse_policy(POLICY_FILES, POLICY_PACKAGES) == {
        "libfoo": ("1.0-2", "Debian-Security:12/oldstable-security", "1.0-1")}


def test_parse_kept_back() -> None:
    text = ("Calculating upgrade...\nThe following packages have been kept back:\n  linux-image-amd64 libfoo\n"
            "  libbar\nThe following packages will be upgraded:\n  hg-other\n")
    assert parse_kept_back(text) == ["linux-image-amd64", "libfoo", "libbar"]


@given(st.text())
def test_kept_back_garbage_never_crashes(text: str) -> None:
    assert all(name and not name.isspace() for name in parse_kept_back(text))


@given(st.text(), st.text())
def test_policy_garbage_never_crashes(files: str, packages: str) -> None:
    for text in (files, POLICY_FILES):
        assert isinstance(parse_policy(text, packages), dict)
        assert isinstance(parse_policy(text, POLICY_PACKAGES + packages), dict)


_token = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="[](),"), min_size=1,
                 max_size=12)


@given(st.lists(st.tuples(_token, st.one_of(st.none(), _token), _token,
                          st.lists(st.builds(lambda a, b: f"{a}:{b}", _token, _token), min_size=1, max_size=3),
                          _token), max_size=5),
       st.lists(st.text(max_size=40), max_size=5))
def test_generated_inst_lines_round_trip(entries: list[tuple[str, str | None, str, list[str], str]],
                                         noise: list[str]) -> None:
    lines = [f"Inst {n}{'' if o is None else f' [{o}]'} ({v} {', '.join(origins)} [{a}])"
             for n, o, v, origins, a in entries]
    noise = [ln for ln in noise if not ln.startswith(("Inst ", "Remv "))]
    updates, _ = parse_simulation("\n".join(lines + noise))
    assert [(u.name, u.old, u.new, list(u.origins), u.arch) for u in updates] == [
        (n, o, v, origins, a) for n, o, v, origins, a in entries]


def test_parse_is_fast_on_a_long_output() -> None:
    line = "Inst libx [1.0] (1.1 Debian-Security:12/stable-security [amd64])\n"
    start = time.perf_counter()
    updates, _ = parse_simulation(line * 5000 + "Inst " + "x " * 5000)
    assert len(updates) == 5000 and time.perf_counter() - start < 5
