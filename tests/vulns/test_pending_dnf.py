"""Pending security updates of dnf/yum against a real local repository and the real dnf.

Tiny noarch rpms (no files) are built here with ``rpmbuild``, put in a ``file:`` repository with
``createrepo_c``, and given an ``updateinfo.xml`` written here (security advisories of each severity, one
without a severity, a bugfix advisory, an advisory for a version already installed, one for a version no
repository offers) with ``modifyrepo_c``. dnf runs under a private configuration only (``--config``,
``--installroot``, ``--setopt=reposdir=``/``cachedir=``, ``--releasever``): the old versions are installed
into the install root, ``dnf makecache`` fills the private cache, and the host's rpm database, dnf state,
cache, logs and repository definitions are compared before and after.

Debian's rpm keeps its database in ``~/.rpmdb`` (``%_dbpath`` runs ``bash -c 'echo ~/.rpmdb'``), so inside
the install root it is ``ROOT/$HOME/.rpmdb``: every dnf here runs with the same HOME, and rpmbuild gets a
``_dbpath`` of its own so that it never opens the host's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostguard.findings import Finding, Severity, SkipReason
from hostguard.remediation import Action
from hostguard.respond.upgrade import prepare as prepare_fix
from hostguard.vulns.pending import PendingResult
from hostguard.vulns.pending_dnf import (
    CHECK_ID,
    LISTS_CHECK_ID,
    Advisory,
    Listed,
    advisory_severity,
    cache_dirs,
    fix_argv,
    metadata_updated,
    parse_ignored_repos,
    parse_list,
    parse_nevra,
    parse_updateinfo,
    pending_dnf_updates,
    security_updates,
)
from tests.conftest import need_root, need_tool

LONG = "hg-a-package-name-long-enough-to-wrap-dnf-columns"   # wider than dnf's default name column
# name -> (epoch, installed version, versions the repository offers besides the installed one)
PACKAGES: dict[str, tuple[int, str, tuple[str, ...]]] = {
    "hg-sec": (0, "1.0", ("1.1",)),
    "hg-multi": (0, "2.0", ("2.1", "2.2")),
    "hg-superseded": (0, "3.0", ("3.1", "3.2")),
    "hg-nosev": (0, "4.0", ("4.1",)),
    "hg-fix": (0, "5.0", ("5.1",)),
    "hg-current": (0, "6.0", ()),
    "hg-epoch": (1, "7.0", ("7.1",)),
    LONG: (0, "8.0", ("8.1",)),
    "hg-plain": (0, "9.0", ("9.1",)),
}
# (id, type, severity or None, [(name, version)]): release 1 everywhere
ADVISORIES: list[tuple[str, str, str | None, list[tuple[str, str]]]] = [
    ("HGSA-2024:0001", "security", "Important", [("hg-sec", "1.1")]),
    ("HGBA-2024:0002", "bugfix", None, [("hg-fix", "5.1")]),                   # near miss: not security
    ("HGSA-2024:0003", "security", "Moderate", [("hg-multi", "2.1")]),
    ("HGSA-2024:0004", "security", "Critical", [("hg-multi", "2.2")]),
    ("HGSA-2024:0005", "security", "Low", [("hg-superseded", "3.1")]),         # 3.2 (no advisory) supersedes it
    ("HGSA-2024:0006", "security", None, [("hg-nosev", "4.1")]),
    ("HGSA-2023:0007", "security", "Critical", [("hg-current", "6.0")]),       # near miss: already installed
    ("HGSA-2024:0008", "security", "Important", [("hg-epoch", "7.1")]),
    ("HGSA-2024:0009", "security", "Low", [(LONG, "8.1")]),
    ("HGSA-2024:0010", "security", "Critical", [("hg-plain", "9.5")]),        # near miss: no repository has 9.5
]
EXPECTED = {  # name -> (severity, advisories, installed, what `dnf upgrade NAME` installs, the advisory's version)
    "hg-sec": (Severity.HIGH, ["HGSA-2024:0001"], "1.0-1", "1.1-1", None),
    "hg-multi": (Severity.CRITICAL, ["HGSA-2024:0003", "HGSA-2024:0004"], "2.0-1", "2.2-1", None),
    "hg-superseded": (Severity.LOW, ["HGSA-2024:0005"], "3.0-1", "3.2-1", "3.1-1"),
    "hg-nosev": (Severity.MEDIUM, ["HGSA-2024:0006"], "4.0-1", "4.1-1", None),
    "hg-epoch": (Severity.HIGH, ["HGSA-2024:0008"], "1:7.0-1", "1:7.1-1", None),
    LONG: (Severity.LOW, ["HGSA-2024:0009"], "8.0-1", "8.1-1", None),
}
REQUIRED = ("dnf", "createrepo_c", "modifyrepo_c", "rpmbuild", "rpm")


def _rpm_dbpath() -> str:
    out = subprocess.run(["rpm", "--eval", "%_dbpath"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "/var/lib/rpm"


def _host_paths() -> tuple[str, ...]:
    return ("/var/lib/rpm", "/usr/lib/sysimage/rpm", _rpm_dbpath(), "/var/lib/dnf", "/var/cache/dnf",
            "/var/cache/yum", "/var/cache/libdnf5", "/etc/yum.repos.d", "/etc/dnf", "/etc/dnf/dnf.conf",
            "/etc/yum.conf", "/var/log/dnf.log", "/var/log/dnf.rpm.log", "/var/log/dnf.librepo.log",
            "/var/log/hawkey.log")


def _host_state() -> dict[str, tuple[int, int, int]]:
    """Modification time, change time and size of each host path and, for a directory, of each entry."""
    out: dict[str, tuple[int, int, int]] = {}
    for p in _host_paths():
        if not os.path.lexists(p):
            continue
        paths = [p] + ([os.path.join(p, n) for n in os.listdir(p)] if os.path.isdir(p) else [])
        for q in paths:
            st_ = os.lstat(q)
            out[q] = (st_.st_mtime_ns, st_.st_ctime_ns, st_.st_size)
    return out


def _evr(epoch: int, version: str) -> str:
    return f"{epoch}:{version}-1" if epoch else f"{version}-1"


def _rpmbuild(base: Path, name: str, epoch: int, version: str) -> None:
    spec = base / "specs" / f"{name}-{version}.spec"
    spec.parent.mkdir(exist_ok=True)
    spec.write_text(f"Name: {name}\n" + (f"Epoch: {epoch}\n" if epoch else "") +
                    f"Version: {version}\nRelease: 1\nSummary: hostguard test package\nLicense: MIT\n"
                    "BuildArch: noarch\n%description\nA hostguard test package without files.\n%files\n")
    defines = {"_topdir": base / "rpmbuild", "_rpmdir": base / "rpms", "_dbpath": base / "rpmbuild-db",
               "_tmppath": base / "rpmbuild-tmp", "_build_id_links": "none"}
    for d in ("rpmbuild-db", "rpmbuild-tmp"):
        (base / d).mkdir(exist_ok=True)
    argv = ["rpmbuild", "-bb", "--quiet"]
    for key, value in defines.items():
        argv += ["--define", f"{key} {value}"]
    subprocess.run([*argv, str(spec)], check=True, capture_output=True, timeout=60)


def _updateinfo() -> str:
    updates = []
    for adv_id, kind, severity, pkgs in ADVISORIES:
        packages = "".join(
            f'        <package name="{n}" version="{v}" release="1" epoch="{PACKAGES[n][0]}" arch="noarch">\n'
            f"          <filename>{n}-{v}-1.noarch.rpm</filename>\n        </package>\n" for n, v in pkgs)
        updates.append(
            f'  <update from="security@example.test" status="stable" type="{kind}" version="2.0">\n'
            f"    <id>{adv_id}</id>\n    <title>{adv_id} for {pkgs[0][0]}</title>\n"
            + (f"    <severity>{severity}</severity>\n" if severity else "")
            + '    <issued date="2024-03-01 00:00:00"/>\n    <description>hostguard test advisory</description>\n'
            + '    <pkglist>\n      <collection short="hg">\n        <name>hg</name>\n'
            + packages + "      </collection>\n    </pkglist>\n  </update>\n")
    return '<?xml version="1.0" encoding="UTF-8"?>\n<updates>\n' + "".join(updates) + "</updates>\n"


@dataclass(frozen=True)
class Repo:
    """The private dnf setup: its base directory, install root, cache and dnf options."""

    base: Path
    root: Path
    cache: Path
    reposdir: Path
    conf: Path

    def options(self, root: Path | None = None, cache: Path | None = None,
                reposdir: Path | None = None) -> tuple[str, ...]:
        """dnf's options for this setup (or a copy of its install root, cache or repository definitions)."""
        return ("--config", str(self.conf), "--installroot", str(root or self.root), "--releasever=1",
                f"--setopt=reposdir={reposdir or self.reposdir}", f"--setopt=cachedir={cache or self.cache}")


def _dnf(options: Sequence[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dnf", *options, "-y", *args], env={**os.environ, "LC_ALL": "C"}, capture_output=True,
                          text=True, check=True, timeout=120)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:
    """A local repository with updateinfo, the old versions installed in a private install root, the private
    cache filled by ``dnf makecache``."""
    need_tool(*REQUIRED)
    need_root("dnf install into a private install root")   # dnf refuses `install` to anyone else
    before = _host_state()
    base = tmp_path_factory.mktemp("dnfrepo")
    for name, (epoch, installed, newer) in PACKAGES.items():
        for version in (installed, *newer):
            _rpmbuild(base, name, epoch, version)
    repodir = base / "repo"
    repodir.mkdir()
    for rpm in (base / "rpms" / "noarch").glob("*.rpm"):
        shutil.copy(rpm, repodir / rpm.name)
    subprocess.run(["createrepo_c", "--quiet", str(repodir)], check=True, capture_output=True, timeout=60)
    (base / "updateinfo.xml").write_text(_updateinfo())
    subprocess.run(["modifyrepo_c", "--mdtype=updateinfo", str(base / "updateinfo.xml"), str(repodir / "repodata")],
                   check=True, capture_output=True, timeout=60)
    reposdir, root, cache = base / "repos.d", base / "root", base / "cache"
    for d in (reposdir, root, cache):
        d.mkdir()
    (reposdir / "hg.repo").write_text(f"[hg]\nname=hostguard test\nbaseurl=file://{repodir}\ngpgcheck=0\n")
    conf = base / "dnf.conf"
    conf.write_text(f"[main]\ngpgcheck=0\nplugins=0\nreposdir={reposdir}\ncachedir={cache}\n"
                    "skip_if_unavailable=False\ninstall_weak_deps=False\nkeepcache=False\n")
    setup = Repo(base, root, cache, reposdir, conf)
    _dnf(setup.options(), "install", *[f"{n}-{_evr(e, v)}" for n, (e, v, _) in PACKAGES.items()])
    _dnf(setup.options(), "makecache")
    yield setup
    assert _host_state() == before, "the host's rpm/dnf state changed"


def _by_name(result: PendingResult) -> dict[str, Finding]:
    return {f.target["name"]: f for f in result.findings if f.id == CHECK_ID}


def test_security_updates_from_local_repository_are_reported(repo: Repo) -> None:
    result = pending_dnf_updates(options=repo.options())
    assert result.available, result.detail
    assert result.command[1:] == ("-C", *repo.options(), "updateinfo", "list", "--updates", "--security")
    assert sorted(u.name for u in result.updates) == sorted(EXPECTED)
    findings = _by_name(result)
    assert sorted(findings) == sorted(EXPECTED)
    for name, (severity, ids, old, new, fixed) in EXPECTED.items():
        (update,) = [u for u in result.updates if u.name == name]
        assert (update.old, update.new, update.superseded, update.origins, update.arch) == (
            old, new, fixed, ("hg",), "noarch"), name
        finding = findings[name]
        assert finding.severity == severity, name
        assert finding.evidence["advisories"] == ids and finding.evidence["manager"] == "dnf"
        assert (finding.evidence["installed"], finding.evidence["available"]) == (old, new)
        (step,) = finding.remediation.steps
        assert isinstance(step, Action) and dict(step.args) == {
            "manager": "dnf", "command": f"dnf upgrade {name}", "packages": name, "to": new}
    assert findings["hg-multi"].title == ("Security update waiting for hg-multi: 2.0-1 → 2.2-1 "
                                          "(HGSA-2024:0003, HGSA-2024:0004)")
    assert findings["hg-superseded"].evidence["security_version"] == "3.1-1"
    # fresh metadata: no stale finding, the age read from the private cache
    assert result.lists_dir == str(repo.cache) and not result.lists_stale
    assert result.lists_age_days is not None and result.lists_age_days < 1
    assert all(f.id != LISTS_CHECK_ID for f in result.findings)


def test_updates_without_a_security_advisory_are_not_reported(repo: Repo) -> None:
    result = pending_dnf_updates(options=repo.options())
    findings = _by_name(result)
    # a bugfix advisory; no advisory at all (its security advisory names a version no repository offers)
    assert [(u.name, u.old, u.new) for u in result.other_updates] == [("hg-fix", "5.0-1", "5.1-1"),
                                                                      ("hg-plain", "9.0-1", "9.1-1")]
    assert "hg-fix" not in findings and "hg-plain" not in findings
    # a security advisory for the version already installed: nothing pending at all
    assert "hg-current" not in {u.name for u in result.updates + result.other_updates} and "hg-current" not in findings


def _apply(options: Sequence[str], argv: Sequence[str]) -> None:
    """Run a printed command (``dnf upgrade NAME``) with the private options added."""
    assert argv[0] == "dnf"
    _dnf(options, *argv[1:])


def test_the_printed_upgrade_installs_the_security_update(repo: Repo, tmp_path: Path) -> None:
    root, cache = tmp_path / "root", tmp_path / "cache"
    shutil.copytree(repo.root, root, symlinks=True)
    shutil.copytree(repo.cache, cache, symlinks=True)
    options = repo.options(root=root, cache=cache)
    before = _by_name(pending_dnf_updates(options=options))
    _apply(options, before["hg-sec"].remediation.steps[0].args[1][1].split())  # type: ignore[union-attr]
    after = pending_dnf_updates(options=options)
    assert sorted(_by_name(after)) == sorted(set(EXPECTED) - {"hg-sec"})
    assert "hg-sec" not in {u.name for u in after.updates + after.other_updates}
    # every printed command, applied: nothing security-related left, the other upgrades untouched
    for name, finding in _by_name(after).items():
        step = finding.remediation.steps[0]
        assert isinstance(step, Action)
        _apply(options, fix_argv("dnf", name))
        assert dict(step.args)["command"] == " ".join(fix_argv("dnf", name))
    final = pending_dnf_updates(options=options)
    assert final.available and not final.updates and not _by_name(final)
    assert [u.name for u in final.other_updates] == ["hg-fix", "hg-plain"]
    listed = parse_list(_dnf(("-C", *options), "list", "--installed", "hg-sec", "hg-multi").stdout)
    assert {(r.name, r.evr) for r in listed} == {("hg-sec", "1.1-1"), ("hg-multi", "2.2-1")}


def test_old_metadata_is_a_finding_and_its_fix_refreshes_it(repo: Repo, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(repo.cache, cache, symlinks=True)
    then = time.time() - 10 * 86400
    for path in [cache, *cache.rglob("*")]:
        os.utime(path, (then, then), follow_symlinks=False)
    options = repo.options(cache=cache)
    stale = pending_dnf_updates(options=options, now=then + 10 * 86400, max_metadata_age_days=7)
    assert stale.available and stale.lists_stale and stale.lists_age_days == 10.0
    assert stale.lists_dir == str(cache) and stale.lists_updated == pytest.approx(then)
    (finding,) = [f for f in stale.findings if f.id == LISTS_CHECK_ID]
    assert finding.severity == "low" and finding.target == {"kind": "path", "path": str(cache)}
    assert finding.title == "dnf's repository metadata is 10 days old: pending updates may be missed"
    assert finding.evidence["age_days"] == 10.0 and finding.evidence["max_age_days"] == 7
    assert finding.remediation.steps == (Action("refresh", (("manager", "dnf"), ("command", "dnf makecache --refresh"))),)
    assert prepare_fix(finding.remediation.steps[0]).argv == ("dnf", "makecache", "--refresh")  # type: ignore[arg-type]
    # stale metadata still gives what it knows
    assert sorted(_by_name(stale)) == sorted(EXPECTED)

    _dnf(options, *prepare_fix(finding.remediation.steps[0]).argv[1:])  # type: ignore[arg-type]
    fresh = pending_dnf_updates(options=options)
    assert not fresh.lists_stale and fresh.lists_age_days is not None and fresh.lists_age_days < 1
    assert all(f.id != LISTS_CHECK_ID for f in fresh.findings)


def test_the_cache_named_by_the_config_file_is_found_inside_the_install_root(repo: Repo, tmp_path: Path) -> None:
    # no --setopt=cachedir: dnf puts the config file's cachedir inside the install root, and so looks hostguard
    root = tmp_path / "root"
    shutil.copytree(repo.root, root, symlinks=True)
    conf = tmp_path / "dnf.conf"
    conf.write_text(repo.conf.read_text().replace(f"cachedir={repo.cache}", "cachedir=/var/cache/hg-test"))
    options = ("--config", str(conf), "--installroot", str(root), "--releasever=1",
               f"--setopt=reposdir={repo.reposdir}")
    _dnf(options, "makecache")
    assert (root / "var/cache/hg-test").is_dir() and not Path("/var/cache/hg-test").exists()
    result = pending_dnf_updates(options=options)
    assert result.lists_dir == f"{root}/var/cache/hg-test" and not result.lists_stale
    assert result.lists_age_days is not None and result.lists_age_days < 1
    assert sorted(_by_name(result)) == sorted(EXPECTED)


def test_no_cached_metadata_at_all_is_a_finding(repo: Repo, tmp_path: Path) -> None:
    result = pending_dnf_updates(options=repo.options(), cache_dir=str(tmp_path))
    assert result.lists_updated is None and result.lists_stale and result.lists_dir == str(tmp_path)
    (finding,) = [f for f in result.findings if f.id == LISTS_CHECK_ID]
    assert finding.title == f"dnf has no cached repository metadata in {tmp_path}: pending updates cannot be known"
    assert finding.evidence["metadata_updated"] is None


def test_a_repository_dnf_skips_for_want_of_a_cache_is_a_finding(repo: Repo, tmp_path: Path) -> None:
    reposdir = tmp_path / "repos.d"
    shutil.copytree(repo.reposdir, reposdir)
    (reposdir / "extra.repo").write_text(f"[hg-extra]\nname=never cached\nbaseurl=file://{tmp_path}/none\n"
                                         "gpgcheck=0\nskip_if_unavailable=True\n")
    result = pending_dnf_updates(options=repo.options(reposdir=reposdir))
    assert result.available and result.lists_stale
    (finding,) = [f for f in result.findings if f.id == LISTS_CHECK_ID]
    assert finding.evidence["repos_without_cache"] == ["hg-extra"]
    assert finding.title == "dnf has no cached metadata for hg-extra: their pending updates cannot be known"
    assert sorted(_by_name(result)) == sorted(EXPECTED)    # the cached repository's updates are still reported


def test_yum_is_used_when_dnf_is_absent(repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # RHEL/CentOS 8+ ship yum as a link to dnf, which takes yum 3's syntax: the yum branch runs for real
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "yum").symlink_to(shutil.which("dnf") or "dnf")
    (bindir / "bash").symlink_to(shutil.which("bash") or "bash")   # Debian's rpm finds its database with bash
    monkeypatch.setenv("PATH", str(bindir))
    result = pending_dnf_updates(options=repo.options())
    assert result.available, result.detail
    assert result.command == (str(bindir / "yum"), "-C", *repo.options(), "updateinfo", "list", "updates", "security")
    findings = _by_name(result)
    assert sorted(findings) == sorted(EXPECTED)
    step = findings["hg-sec"].remediation.steps[0]
    assert isinstance(step, Action)
    assert dict(step.args)["command"] == "yum update hg-sec" and dict(step.args)["manager"] == "yum"
    assert findings["hg-sec"].evidence["manager"] == "yum"


def test_missing_dnf_and_yum_are_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = pending_dnf_updates(dnf=str(tmp_path / "dnf"))
    assert result == PendingResult(False, SkipReason.TOOL_MISSING, f"{tmp_path / 'dnf'} not found: not a dnf or yum system")
    monkeypatch.setenv("PATH", str(tmp_path))
    result = pending_dnf_updates()
    assert result == PendingResult(False, SkipReason.TOOL_MISSING, "dnf and yum not found: not a dnf or yum system")
    assert not result.findings and not result.updates


def _fake(tmp_path: Path, body: str) -> str:
    fake = tmp_path / "dnf"
    fake.write_text("#!/bin/sh\n" + body)
    fake.chmod(0o755)
    return str(fake)


def test_failing_dnf_is_unavailable_with_its_error(tmp_path: Path) -> None:
    fake = _fake(tmp_path, "echo 'Last metadata expiration check: 0:01:00 ago.'\n"
                           "echo \"Error: Cache-only enabled but no cache for 'baseos'\" >&2\nexit 1\n")
    result = pending_dnf_updates(dnf=fake)
    assert not result.available and result.reason == SkipReason.ERROR
    assert result.detail == ("dnf updateinfo list --updates --security failed (exit 1): "
                             "Error: Cache-only enabled but no cache for 'baseos'")
    assert result.command == (fake, "-C", "updateinfo", "list", "--updates", "--security")


def test_slow_dnf_is_over_budget(tmp_path: Path) -> None:
    result = pending_dnf_updates(dnf=_fake(tmp_path, "exec sleep 10\n"), timeout=0.5)
    assert not result.available and result.reason == SkipReason.BUDGET
    assert result.detail == "dnf updateinfo list --updates --security took over 0.5 s"


# ---- the pure parts -------------------------------------------------------------------------------------

def test_parse_updateinfo_of_dnf4_yum3_and_dnf5() -> None:
    text = """Last metadata expiration check: 2:14:05 ago on Mon 04 Mar 2024 09:12:44 AM UTC.
Loaded plugins: fastestmirror, security
EXSA-2024:0101 Important/Sec. libexample-2.4.1-3.el9_3.x86_64
EXSA-2024:0101 Important/Sec. libexample-2.4.1-3.el9_3.i686
EXSA-2024:0102 Critical/Sec.  tool-1:5.0-2.el9.noarch 2024-03-01 00:00:00
EXSA-2024:0103 Unknown/Sec.   nosev-1.0-1.el9.x86_64
EXSA-2024:0106 security       yum3nosev-1.0-1.el7.x86_64
EXBA-2024:0104 bugfix         fixed-3.2-1.el9.x86_64
EXEA-2024:0105 enhancement    nicer-0.9-1.el9.x86_64
updateinfo list done
EXSA-2024-77aa security Moderate fivepkg-0:3.1-4.fc41.aarch64 2024-02-20 13:00:00
EXSA-2024-77ab security None     fivenone-1.2-1.fc41.noarch   2024-02-21 13:00:00
Name Type Severity Package Issued
"""
    assert parse_updateinfo(text) == [
        Advisory("EXSA-2024:0101", "security", "Important", "libexample", "2.4.1-3.el9_3", "x86_64"),
        Advisory("EXSA-2024:0101", "security", "Important", "libexample", "2.4.1-3.el9_3", "i686"),
        Advisory("EXSA-2024:0102", "security", "Critical", "tool", "1:5.0-2.el9", "noarch"),
        Advisory("EXSA-2024:0103", "security", "Unknown", "nosev", "1.0-1.el9", "x86_64"),
        Advisory("EXSA-2024:0106", "security", "", "yum3nosev", "1.0-1.el7", "x86_64"),
        Advisory("EXBA-2024:0104", "bugfix", "", "fixed", "3.2-1.el9", "x86_64"),
        Advisory("EXEA-2024:0105", "enhancement", "", "nicer", "0.9-1.el9", "x86_64"),
        Advisory("EXSA-2024-77aa", "security", "Moderate", "fivepkg", "0:3.1-4.fc41", "aarch64"),
        Advisory("EXSA-2024-77ab", "security", "None", "fivenone", "1.2-1.fc41", "noarch"),
    ]


@pytest.mark.parametrize(("text", "expected"), [
    ("openssl-libs-1:3.0.7-27.el9.x86_64", ("openssl-libs", "1:3.0.7-27.el9", "x86_64")),
    ("kernel-5.14.0-427.13.1.el9_4.x86_64", ("kernel", "5.14.0-427.13.1.el9_4", "x86_64")),
    ("a-b-c-1-2.noarch", ("a-b-c", "1-2", "noarch")),
    ("python3.11-3.11.7-1.el9.x86_64", ("python3.11", "3.11.7-1.el9", "x86_64")),
    ("noversion.x86_64", None), ("name-1.0.x86_64", None), ("name-1.0-1", None), ("name-x:1.0-1.noarch", None),
    ("-1.0-1.noarch", None), ("name-1:2:3-1.noarch", None), ("name-1.0-1.x86-64", None), ("", None),
    ("na me-1.0-1.noarch", None),
])
def test_parse_nevra(text: str, expected: tuple[str, str, str] | None) -> None:
    assert parse_nevra(text) == expected


def test_parse_list_joins_wrapped_rows_and_skips_obsoleted_packages() -> None:
    text = """Last metadata expiration check: 0:00:03 ago on Mon 04 Mar 2024 09:12:44 AM UTC.
Installed Packages
libexample.x86_64                      2.4.1-1.el9                        @baseos
a-package-name-long-enough-to-wrap-the-columns.noarch
                                       8.0-1                              @hg
tool.noarch                            1:5.0-1.el9                        @appstream
wrapped-repo.x86_64                    1.0-1
                                       updates
Available Upgrades
libexample.x86_64                      2.4.1-3.el9_3                      baseos
Obsoleting Packages
newname.x86_64                         2.0-1.el9                          baseos
    oldname.x86_64                     1.0-1.el9                          @baseos
"""
    assert parse_list(text) == [
        Listed("libexample", "x86_64", "2.4.1-1.el9", "@baseos"),
        Listed("a-package-name-long-enough-to-wrap-the-columns", "noarch", "8.0-1", "@hg"),
        Listed("tool", "noarch", "1:5.0-1.el9", "@appstream"),
        Listed("wrapped-repo", "x86_64", "1.0-1", "updates"),
        Listed("libexample", "x86_64", "2.4.1-3.el9_3", "baseos"),
    ]


def test_parse_ignored_repos() -> None:
    stderr = ("Error: Cache-only enabled but no cache for 'epel'\nIgnoring repositories: epel, extras\n"
              "Error: Cache-only enabled but no cache for 'crb'\n")
    assert parse_ignored_repos(stderr) == ["crb", "epel", "extras"]
    assert parse_ignored_repos("Ignoring repositories: \n") == []


@pytest.mark.parametrize(("word", "severity"), [
    ("Critical", Severity.CRITICAL), ("Important", Severity.HIGH), ("Moderate", Severity.MEDIUM),
    ("Low", Severity.LOW), ("", Severity.MEDIUM), ("None", Severity.MEDIUM), ("Unknown", Severity.MEDIUM),
    ("important", Severity.HIGH)])
def test_advisory_severity(word: str, severity: Severity) -> None:
    assert advisory_severity(word) == severity


def test_security_updates_merge_per_package() -> None:
    advisories = [Advisory("A-1", "security", "Moderate", "libx", "1.1-1", "x86_64"),
                  Advisory("A-2", "security", "Critical", "libx", "1.2-1", "x86_64"),
                  Advisory("A-2", "security", "Critical", "libx", "1.2-1", "i686"),
                  Advisory("B-1", "bugfix", "", "liby", "2.1-1", "x86_64"),
                  Advisory("K-1", "security", "Important", "kernel", "5.1-1", "x86_64")]
    installed = [Listed("libx", "x86_64", "1.0-1", "@baseos"), Listed("libx", "i686", "1.0-1", "@baseos"),
                 Listed("liby", "x86_64", "2.0-1", "@baseos"), Listed("kernel", "x86_64", "4.10-1", "@baseos"),
                 Listed("kernel", "x86_64", "5.0-1", "@baseos"), Listed("kernel", "x86_64", "4.9-1", "@baseos")]
    upgrades = [Listed("libx", "x86_64", "1.3-1", "baseos"), Listed("libx", "i686", "1.3-1", "baseos"),
                Listed("liby", "x86_64", "2.1-1", "appstream"), Listed("kernel", "x86_64", "5.1-1", "baseos")]
    security, other = security_updates(advisories, installed, upgrades)
    assert [(u.name, u.old, u.new, u.superseded, u.origins, u.arch, sev, ids) for u, sev, ids in security] == [
        ("kernel", "5.0-1", "5.1-1", None, ("baseos",), "x86_64", Severity.HIGH, ("K-1",)),
        ("libx", "1.0-1", "1.3-1", "1.2-1", ("baseos",), "i686,x86_64", Severity.CRITICAL, ("A-1", "A-2"))]
    assert [(u.name, u.old, u.new, u.origins) for u in other] == [("liby", "2.0-1", "2.1-1", ("appstream",))]


def test_an_advisory_no_upgrade_reaches_is_no_pending_update() -> None:
    # updateinfo --updates lists it because libx has *a* newer version (1.1), but the fix is in 1.5
    advisories = [Advisory("A-1", "security", "Critical", "libx", "1:1.5-1", "noarch"),
                  Advisory("A-2", "security", "Low", "liby", "2.0-1", "noarch")]
    upgrades = [Listed("libx", "noarch", "1:1.1-1", "updates")]
    security, other = security_updates(advisories, [Listed("libx", "noarch", "1:1.0-1", "@updates")], upgrades)
    assert security == []
    assert [(u.name, u.old, u.new) for u in other] == [("libx", "1:1.0-1", "1:1.1-1")]


def test_fix_argv() -> None:
    assert fix_argv("dnf", "openssl") == ("dnf", "upgrade", "openssl")
    assert fix_argv("yum", "openssl") == ("yum", "update", "openssl")


def test_cache_dirs(tmp_path: Path) -> None:
    conf = tmp_path / "dnf.conf"
    conf.write_text("[main]\ncachedir=/srv/dnf-cache\n")
    assert cache_dirs("dnf", ["--setopt=cachedir=/x/cache", "--installroot", "/r"]) == ["/x/cache"]
    assert cache_dirs("dnf", ["--setopt", "cachedir=/x/cache"]) == ["/x/cache"]
    assert cache_dirs("dnf", ["--config", str(conf), "--installroot=/r"]) == ["/r/srv/dnf-cache"]
    assert cache_dirs("dnf", [f"-c{conf}"]) == ["/srv/dnf-cache"]
    # the default config inside the install root, which names no cachedir: the defaults, inside the root
    (tmp_path / "etc" / "dnf").mkdir(parents=True)
    (tmp_path / "etc" / "dnf" / "dnf.conf").write_text("[main]\ngpgcheck=1\n")
    assert cache_dirs("dnf", ["--installroot", str(tmp_path)]) == [f"{tmp_path}/var/cache/dnf",
                                                                   f"{tmp_path}/var/cache/libdnf5"]
    (tmp_path / "etc" / "yum.conf").write_text("[main]\ncachedir=/var/cache/yum/$basearch/$releasever\n")
    assert cache_dirs("yum", ["--installroot", str(tmp_path)]) == [f"{tmp_path}/var/cache/yum/$basearch/$releasever"]


def test_metadata_updated_of_dnf_and_yum3_caches(tmp_path: Path) -> None:
    dnf = tmp_path / "dnf"
    repodata = dnf / "baseos-0123456789abcdef" / "repodata"
    repodata.mkdir(parents=True)
    for name, stamp in (("repomd.xml", 1000), ("abc-primary.xml.gz", 5000), ("abc-filelists.xml.gz", 9000)):
        (repodata / name).write_text("x")
        os.utime(repodata / name, (stamp, stamp))
    (dnf / "baseos.solv").write_text("x")                     # libsolv's cache, not metadata: ignored
    assert metadata_updated(dnf) == 5000                      # libdnf's age: the primary metadata's mtime
    yum = tmp_path / "yum"
    base = yum / "x86_64" / "7" / "base"
    base.mkdir(parents=True)
    for name, stamp in (("repomd.xml", 2000), ("cachecookie", 7000)):
        (base / name).write_text("x")
        os.utime(base / name, (stamp, stamp))
    assert metadata_updated(f"{yum}/$basearch/$releasever") == 7000
    assert metadata_updated(tmp_path / "missing") is None
    assert metadata_updated(tmp_path) == 7000                 # the newest repository of all


@given(st.text())
def test_garbage_never_crashes(text: str) -> None:
    assert all(a.id and a.name and a.evr and a.arch for a in parse_updateinfo(text))
    assert all(r.name and r.arch and r.evr and r.repo for r in parse_list(text))
    assert isinstance(parse_ignored_repos(text), list)
    for token in text.split():
        parse_nevra(token)
    security, other = security_updates(parse_updateinfo(text), parse_list(text), parse_list(text))
    assert {u.name for u, _, _ in security}.isdisjoint(u.name for u in other)


_word = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="-:./"), min_size=1, max_size=8)
_arch = st.sampled_from(["x86_64", "i686", "aarch64", "noarch", "s390x"])


@given(st.lists(st.tuples(_word, st.sampled_from(["Critical", "Important", "Moderate", "Low", ""]),
                          st.lists(_word, min_size=1, max_size=3).map("-".join), st.integers(0, 3),
                          st.lists(st.integers(0, 99).map(str), min_size=1, max_size=3).map(".".join),
                          _word, _arch), max_size=6),
       st.lists(st.text(max_size=30), max_size=4))
def test_generated_updateinfo_lines_round_trip(entries: list[tuple[str, str, str, int, str, str, str]],
                                               noise: list[str]) -> None:
    lines = [f"{i} {s + '/' if s else ''}Sec. {n}-{f'{e}:' if e else ''}{v}-{r}.{a}" for i, s, n, e, v, r, a in entries]
    noise = [ln for ln in noise if len(ln.split()) < 3]
    assert parse_updateinfo("\n".join(noise + lines)) == [
        Advisory(i, "security", s, n, f"{f'{e}:' if e else ''}{v}-{r}", a) for i, s, n, e, v, r, a in entries]


def test_parse_is_fast_on_a_long_output() -> None:
    start = time.perf_counter()
    advisories = parse_updateinfo("EXSA-1 Important/Sec. libx-1.0-1.el9.x86_64\n" * 5000 + "x-" * 5000)
    rows = parse_list("libx.x86_64 1.0-1 @baseos\n" * 5000 + "a." * 5000)
    assert len(advisories) == 5000 and len(rows) == 5000 and time.perf_counter() - start < 5
