"""``hostguard fix`` carrying out ``Action("upgrade")`` steps.

The real thing: a virtualenv (made here, owned by ``nobody``) with an old version of a wheel built here,
an OSV record naming it, ``hostguard fix FINGERPRINT`` running the printed ``VENV/bin/pip install -U NAME``
(against a local wheel directory: pip's own ``PIP_FIND_LINKS``/``PIP_NO_INDEX``, as an owner's pip.conf
would say), as the venv's owner, and the re-scan no longer finding it. The other managers' commands are
checked for the shapes ``fix`` accepts and how it runs them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostguard.remediation import Action
from hostguard.respond.fix import FixSettings, make_plan
from hostguard.respond.upgrade import UpgradeError, prepare
from hostguard.vulns.findings import package_finding
from hostguard.vulns.inventory import Item
from tests.checks.test_vulns import _vuln
from tests.conftest import need_root
from tests.vulns.osv_helpers import affected, record, rng, write_dir

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534


def _step(manager: str, command: str, cwd: str = "") -> Action:
    args = [("manager", manager), ("command", command)] + ([("cwd", cwd)] if cwd else [])
    return Action("upgrade", (*args, ("packages", "x"), ("to", "1")))


@pytest.mark.parametrize(("manager", "command", "argv"), [
    ("apt-get", "apt-get install --only-upgrade libssl3 openssl",
     ("apt-get", "-y", "--no-remove", "-o", "Dpkg::Options::=--force-confold", "install", "--only-upgrade", "libssl3",
      "openssl")),
    ("dnf", "dnf upgrade openssl", ("dnf", "-y", "upgrade", "openssl")),
    ("yum", "yum update openssl", ("yum", "-y", "update", "openssl")),
    ("apk", "apk upgrade busybox ssl_client", ("apk", "upgrade", "busybox", "ssl_client")),
    ("pip", "python3.11 -m pip install -U requests", ("python3.11", "-I", "-m", "pip", "install", "-U", "requests")),
    ("npm", "npm update -g npm", ("npm", "update", "-g", "npm")),
])
def test_printed_commands_run_as_printed_with_the_unattended_options(manager: str, command: str,
                                                                      argv: tuple[str, ...]) -> None:
    up = prepare(_step(manager, command))
    assert up.argv == argv and up.uid is None and up.cwd == "/"
    assert up.env == ({"DEBIAN_FRONTEND": "noninteractive"} if manager == "apt-get" else {})


@pytest.mark.parametrize(("manager", "command"), [
    ("apt-get", "apt-get remove openssh-server"),                 # another subcommand
    ("apt-get", "sh -c 'apt-get install --only-upgrade x'"),      # another program
    ("apt-get", "apt-get install --only-upgrade -o APT::Get::AllowUnauthenticated=1 x"),  # options smuggled in
    ("dnf", "dnf upgrade"),                                       # everything, not the package
    ("pip", "/srv/venv/bin/pip install https://evil.test/x.whl"),  # not -U NAME
    ("pip", "python3 -c 'import os'"),
    ("composer", "composer require evil/pkg"),
    ("gem", "gem update rails"),                                  # a manager hostguard never prints
    ("apt-get", "apt-get install --only-upgrade 'unclosed"),
    ("pip", "python3 -m pip install -U --index-url http://198.51.100.1/simple requests"),  # options
    ("pip", "/srv/venv/bin/pip install -U -e /var/www/html/x"),
    ("pip", "venv/bin/pip install -U requests"),                  # not an absolute path
    ("npm", "npm update left-pad -g"),                            # -g only first
    ("dnf", "dnf upgrade *"),
    ("npm", "npm update axios"),                                  # a project's npm names its project (cwd)
])
def test_other_shapes_are_refused(manager: str, command: str) -> None:
    with pytest.raises(UpgradeError):
        prepare(_step(manager, command))


def test_a_project_manager_runs_as_the_projects_owner_and_never_as_root(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    need_root("changing a directory's owner")
    import pwd

    project = tmp_path / "shop"
    project.mkdir()
    os.chown(project, NOBODY, 0)   # chown without :group leaves root's group: the run never takes it
    monkeypatch.setenv("HG_ROOTS_SECRET", "s3cr3t")
    monkeypatch.setenv("PIP_INDEX_URL", "https://packages.example.test/simple")
    up = prepare(_step("npm", "npm update axios", str(project)), passthrough=("PIP_INDEX_URL",))
    assert (up.uid, up.gid, up.cwd) == (NOBODY, pwd.getpwuid(NOBODY).pw_gid, str(project))
    assert up.clean_env and "HG_ROOTS_SECRET" not in up.env and up.env["PIP_INDEX_URL"].endswith("/simple")
    assert set(up.env) == {"PATH", "HOME", "LANG", "PIP_INDEX_URL"}
    # a root-owned project: its scripts and plugins would run as root: by hand
    os.chown(project, 0, 0)
    with pytest.raises(UpgradeError, match="owned by root"):
        prepare(_step("composer", "composer update monolog/monolog", str(project)))
    # writable by others than its owner, or below a directory another account can change: refused
    os.chown(project, NOBODY, NOBODY)
    project.chmod(0o775)
    with pytest.raises(UpgradeError, match="writable by group or others"):
        prepare(_step("composer", "composer update monolog/monolog", str(project)))
    project.chmod(0o755)
    outer = tmp_path / "www"
    outer.mkdir()
    inner = outer / "site"
    inner.mkdir()
    os.chown(outer, 33, 33)    # www-data could rename site away and put its own in its place
    os.chown(inner, NOBODY, NOBODY)
    with pytest.raises(UpgradeError, match="another account"):
        prepare(_step("npm", "npm update axios", str(inner)))
    link = tmp_path / "link"
    link.symlink_to(project)
    with pytest.raises(UpgradeError, match="symlink"):
        prepare(_step("npm", "npm update axios", str(link)))


def test_the_environment_is_checked_again_just_before_the_run(tmp_path: Path) -> None:
    need_root("changing a directory's owner")
    from hostguard.respond.upgrade import run

    project = tmp_path / "shop"
    project.mkdir()
    os.chown(project, NOBODY, NOBODY)
    up = prepare(_step("npm", "npm update axios", str(project)))
    project.rename(tmp_path / "old")
    (tmp_path / "shop").mkdir()
    os.chown(tmp_path / "shop", NOBODY, NOBODY)
    ok, text = run(up)
    assert not ok and "changed since it was checked" in text


def test_a_run_past_its_time_is_stopped_with_its_whole_process_group(tmp_path: Path) -> None:
    from hostguard.respond.upgrade import Upgrade, run

    marker = tmp_path / "child-alive"
    script = tmp_path / "apk"
    script.write_text(f"#!/bin/sh\n(sleep 2; touch {marker}) &\nsleep 30\n")
    script.chmod(0o755)
    ok, text = run(Upgrade("apk", (str(script), "upgrade", "x")), timeout=0.5)
    assert not ok and "not done within" in text
    time.sleep(2.5)
    assert not marker.exists()   # the background child went with it


def test_under_root_an_upgrade_is_by_hand_with_the_chroot_command(tmp_path: Path) -> None:
    item = Item("Debian:12", "openssl", "3.0.11-1~deb12u1", "apt-get", "/var/lib/dpkg/status", "", ("openssl",),
                ("3.0.11-1~deb12u1",))
    finding = package_finding(item, _vuln("3.0.11-1~deb12u2"))
    plan = make_plan(finding, FixSettings(str(tmp_path / "state"), root=str(tmp_path)))
    assert plan.blocked is not None and f"chroot {tmp_path} apt-get install --only-upgrade openssl" in plan.blocked
    venv = Item("PyPI", "django", "4.2.1", "pip", "/srv/app/venv/lib/x/METADATA", "/srv/app/venv")
    by_hand = make_plan(package_finding(venv, _vuln("4.2.2")), FixSettings(str(tmp_path / "state"), root=str(tmp_path)))
    assert by_hand.blocked is not None and "as the environment's owner" in by_hand.blocked
    live = make_plan(finding, FixSettings(str(tmp_path / "state")))
    assert live.blocked is None and [u.argv[-1] for u in live.upgrades] == ["openssl"]


def _wheel(directory: Path, name: str, version: str) -> None:
    files = {f"{name}/__init__.py": f"VERSION = {version!r}\n".encode(),
             f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: hostguard-tests\n"
                                                  b"Root-Is-Purelib: true\nTag: py3-none-any\n"}
    lines = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{path},sha256={digest},{len(data)}")
    lines.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = ("\n".join(lines) + "\n").encode()
    with zipfile.ZipFile(directory / f"{name}-{version}-py3-none-any.whl", "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A temp dir nobody can traverse (pytest's own are 0700), removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="hostguard-upgrade-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_fix_upgrades_a_virtualenvs_package_as_its_owner_and_the_rescan_is_clean(tmp_path: Path,
                                                                                world_readable_dir: Path) -> None:
    need_root("running pip as the virtualenv's owner")
    base = world_readable_dir
    wheels = base / "wheels"
    wheels.mkdir()
    for version in ("1.0", "1.1"):
        _wheel(wheels, "hgdemo", version)
    for p in wheels.iterdir():
        p.chmod(0o644)
    wheels.chmod(0o755)
    venv = base / "app/venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    pip_env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([str(venv / "bin/pip"), "install", "hgdemo==1.0"], check=True, capture_output=True, env=pip_env,
                   timeout=300)
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(base / "app")], check=True)
    (base / "app").chmod(0o755)
    db = tmp_path / "osv"
    write_dir(db, "PyPI", record("PYSEC-TEST-9", affected("PyPI", "hgdemo", rng(("introduced", "0"), ("fixed", "1.1")))))
    config = tmp_path / "hostguard.toml"
    # pip's own settings reach the owner's run only when named: the minimal environment is the default
    config.write_text(f'[vulns]\ndb = "{db}"\npaths = ["{base}"]\n'
                      'upgrade_env = ["PIP_NO_INDEX", "PIP_FIND_LINKS", "PIP_DISABLE_PIP_VERSION_CHECK"]\n')
    env = {**pip_env, "PYTHONPATH": str(ROOT / "src")}
    cli = [sys.executable, "-m", "hostguard.cli", "--config", str(config), "--state", str(tmp_path / "state")]

    def ours() -> list[dict[str, object]]:
        done = subprocess.run([*cli, "scan", "--only", "vulns.package", "--format", "json"], capture_output=True,
                              text=True, env=env, timeout=600)
        assert done.returncode in (0, 1), done.stderr
        return [f for f in json.loads(done.stdout)["findings"] if f["target"]["name"] == "hgdemo"]

    [finding] = ours()
    assert finding["target"]["location"] == str(venv)
    [step] = finding["remediation"]["steps"]
    assert step["command"] == f"{venv}/bin/pip install -U hgdemo"
    fixed = subprocess.run([*cli, "fix", "--only", "vulns.package", "--yes", finding["fingerprint"]],
                           capture_output=True, text=True, env=env, timeout=900)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert f"as uid {NOBODY}" in fixed.stdout and "fixed: vulns.package" in fixed.stdout
    assert "not undone by --undo" in fixed.stdout
    assert ours() == []
    [dist] = (venv / "lib").glob("python3*/site-packages/hgdemo-1.1.dist-info")
    assert dist.stat().st_uid == NOBODY  # pip ran as the venv's owner, not as root
    assert not list((venv / "lib").glob("python3*/site-packages/hgdemo-1.0.dist-info"))


def _deb_with_file(build: Path, out: Path, name: str, version: str) -> None:
    root = build / f"{name}_{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
                                         "Maintainer: Test <t@example.test>\nDescription: hostguard test package\n")
    doc = root / "usr/share/doc" / name
    doc.mkdir(parents=True)
    (doc / "version").write_text(version + "\n")
    subprocess.run(["dpkg-deb", "-Zgzip", "--root-owner-group", "--build", str(root),
                    str(out / f"{name}_{version}_all.deb")], check=True, capture_output=True)


def test_the_apt_upgrade_fix_runs_apt_and_dpkg_on_a_private_root_and_the_update_is_no_longer_pending(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """apt-get and dpkg for real, on a copy: a private APT_CONFIG whose dpkg works on a root made here (its
    own status file, --root, its own log), a security archive with hg-fixme 1.1, the pending update found,
    its step carried out by fix's upgrade runner, and the simulation asked again."""
    from hostguard.respond.upgrade import run
    from hostguard.vulns.pending import pending_security_updates
    from tests.vulns.test_pending import _host_apt_state, private_apt

    need_root("dpkg --root")
    host_before = (_host_apt_state(), os.stat("/var/log/dpkg.log").st_size if os.path.exists("/var/log/dpkg.log") else 0)
    for tool in ("dpkg-deb", "dpkg-scanpackages", "apt-get", "dpkg"):
        if shutil.which(tool) is None:
            pytest.skip(reason=f"{tool} is not installed")
    root = tmp_path / "root"
    for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "var/log", "usr/share/doc"):
        (root / d).mkdir(parents=True)
    archive = tmp_path / "security"
    archive.mkdir()
    _deb_with_file(tmp_path / "build", archive, "hg-fixme", "1.1")
    old = tmp_path / "old"
    old.mkdir()
    _deb_with_file(tmp_path / "build", old, "hg-fixme", "1.0")
    (root / "var/lib/dpkg/status").write_text("")
    log = root / "var/log/dpkg.log"
    dpkg_opts = [f"--root={root}", f"--log={log}"]
    subprocess.run(["dpkg", *dpkg_opts, "-i", str(old / "hg-fixme_1.0_all.deb")], check=True, capture_output=True)
    assert (root / "usr/share/doc/hg-fixme/version").read_text() == "1.0\n"
    scan = subprocess.run(["dpkg-scanpackages", "."], cwd=archive, check=True, capture_output=True, text=True)
    (archive / "Packages").write_text(scan.stdout)
    (archive / "Release").write_text("Origin: Debian\nLabel: Debian-Security\nSuite: bookworm-security\n"
                                     "Codename: bookworm-security\nVersion: 12\n")
    conf = private_apt(tmp_path / "apt", (archive,), root / "var/lib/dpkg/status", dpkg_options=tuple(dpkg_opts))
    env = {**os.environ, "APT_CONFIG": str(conf), "LC_ALL": "C"}
    subprocess.run(["apt-get", "update"], env=env, check=True, capture_output=True, timeout=120)

    before = pending_security_updates(apt_config=conf)
    [finding] = [f for f in before.findings if f.target.get("name") == "hg-fixme"]
    [step] = finding.remediation.steps
    assert isinstance(step, Action)
    monkeypatch.setenv("APT_CONFIG", str(conf))
    ok, text = run(prepare(step), timeout=300)
    assert ok, text
    assert (root / "usr/share/doc/hg-fixme/version").read_text() == "1.1\n"
    status = subprocess.run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f", "${Version}", "hg-fixme"],
                            capture_output=True, text=True, check=True).stdout
    assert status == "1.1"
    after = pending_security_updates(apt_config=conf)
    assert after.available and [u.name for u in after.updates] == []
    assert "hg-fixme" in log.read_text()  # dpkg logged into the copy, not the host's /var/log/dpkg.log
    assert (_host_apt_state(), os.stat("/var/log/dpkg.log").st_size if os.path.exists("/var/log/dpkg.log") else 0) \
        == host_before, "the host's apt or dpkg state changed"
