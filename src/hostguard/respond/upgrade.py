"""``Action("upgrade")`` and ``Action("refresh")`` steps carried out by ``hostguard fix``.

A vulnerable package's fix is the exact command of the package manager that owns it (``vulns.findings``,
``vulns.pending*``); stale package lists are fixed by the manager's own refresh. ``fix`` runs that command
and nothing else, with the differences an unattended run by root needs and a pasted one does not:

* a command is accepted only in the shapes hostguard prints (the manager as the program, its own
  subcommand, package names and no options): a step that was tampered with, or names another program or an
  option, is refused;
* apt-get, dnf and yum get ``-y`` (the owner already said yes to this fix; without it a run whose upgrade
  pulls in a new dependency stops at the question); apt also ``--no-remove`` (an upgrade that would remove a
  package stops instead), ``DEBIAN_FRONTEND=noninteractive`` and ``--force-confold`` (a configuration file
  the owner changed is kept, never replaced); the system's ``python3 -m pip`` runs isolated (``-I``: not
  from the current directory, not steered by ``PYTHON*`` variables); every system command runs in ``/``;
* a language environment's package manager (a virtualenv's ``pip``, ``npm`` and ``composer`` in a project)
  is **never run as root**: its files (``bin/pip`` itself, ``.pth`` files, the project's scripts and
  plugins) are whatever the environment's owner wrote, and running them as root would hand that account
  root. It runs as the owner (its own primary group, no other groups, a minimal environment: root's
  variables are not the owner's to read, only ``[vulns] upgrade_env`` names pass), and only when nobody
  else can swap the directory under it: no symlink anywhere in the path, every ancestor owned by root or
  by the owner and writable by nobody else, the directory itself not writable by group or others. A
  root-owned environment is left to the owner (by hand). The directory's identity is checked again just
  before the command runs.

An upgrade is not undone by ``fix --undo`` (the old version may no longer be downloadable); the re-scan
after it is what says whether it worked.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import signal
import stat
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hostguard.remediation import Action

__all__ = ["Upgrade", "UpgradeError", "prepare", "run"]

TIMEOUT = 1800  # a large upgrade (a kernel, many libraries) takes minutes
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# a package argument: a name as the managers print it (apt name:arch, rpm name.arch, @scope/name, vendor/name)
PACKAGE = re.compile(r"[A-Za-z0-9@_][A-Za-z0-9._+:/@~-]*")
PYPI_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
SYSTEM_PROGRAM = {"apt-get": "apt-get", "dnf": "dnf", "yum": "yum", "apk": "apk"}
SUBCOMMAND = {"apt-get": ("install", "--only-upgrade"), "dnf": ("upgrade",), "yum": ("update",), "apk": ("upgrade",),
              "npm": ("update",), "composer": ("update",)}
REFRESH = {("apt-get", "update"), ("dnf", "makecache", "--refresh"), ("yum", "makecache"), ("apk", "update")}
ENVIRONMENT_MANAGERS = frozenset({"pip", "npm", "composer"})
PIP_SYSTEM = re.compile(r"python3(\.\d+)?")


class UpgradeError(Exception):
    """The step cannot be run as it stands (an unknown manager, a command of another shape, an unsafe place)."""


@dataclass(frozen=True)
class Upgrade:
    """One upgrade as it will run: ``argv`` in ``cwd`` as ``uid``/``gid`` (None: as root), with ``env`` as
    its whole environment when ``clean_env`` (the owner's run), else added to hostguard's own; ``identity``
    the (dev, inode, uid, mode) of the environment directory, checked again just before the run."""

    manager: str
    argv: tuple[str, ...]
    cwd: str = "/"
    uid: int | None = None
    gid: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    clean_env: bool = False
    identity: tuple[int, int, int, int] | None = None

    def describe(self) -> str:
        """The command as it runs, for people and the fix record."""
        who = f"as uid {self.uid}" if self.uid is not None else "as root"
        return f"{shlex.join(self.argv)} (in {self.cwd}, {who})"


def _packages(manager: str, args: Sequence[str]) -> None:
    if not args:
        raise UpgradeError(f"a {manager} upgrade names the packages to upgrade")
    for arg in args:
        if not PACKAGE.fullmatch(arg):
            raise UpgradeError(f"a {manager} upgrade step names packages, not {arg!r}")


def _check_shape(manager: str, argv: list[str]) -> list[str]:
    """The package names of a command of the shape hostguard prints; UpgradeError otherwise."""
    if not argv:
        raise UpgradeError("no command")
    if manager == "pip":
        if argv[0].startswith("/") and argv[0].endswith("/bin/pip"):
            rest = argv[1:]
        elif PIP_SYSTEM.fullmatch(argv[0]) and argv[1:3] == ["-m", "pip"]:
            rest = argv[3:]
        else:
            raise UpgradeError(f"not a pip upgrade: {shlex.join(argv)}")
        if len(rest) != 3 or rest[:2] != ["install", "-U"] or not PYPI_NAME.fullmatch(rest[2]):
            raise UpgradeError(f"not a pip upgrade of one package: {shlex.join(argv)}")
        return rest[2:]
    program = SYSTEM_PROGRAM.get(manager, manager)
    if argv[0] != program:
        raise UpgradeError(f"a {manager} upgrade runs {program}, not {argv[0]!r}")
    sub = SUBCOMMAND[manager]
    if tuple(argv[1:1 + len(sub)]) != sub:
        raise UpgradeError(f"not a {manager} upgrade: {shlex.join(argv)}")
    names = argv[1 + len(sub):]
    if manager == "npm" and names[:1] == ["-g"]:
        names = names[1:]
    _packages(manager, names)
    return names


def _account(uid: int) -> tuple[int, str]:
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        raise UpgradeError(f"uid {uid} owns the environment but has no account: not run") from None
    return entry.pw_gid, entry.pw_dir


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_uid, st.st_mode


def _owned_environment(directory: str) -> tuple[int, tuple[int, int, int, int]]:
    """The account that may run ``directory``'s package manager, and the directory's identity. Refused when
    anyone else could swap or change it: a symlink on the way, an ancestor owned by another account or
    writable by others, the directory writable by group or others, or a root-owned directory."""
    if not os.path.isabs(directory) or os.path.normpath(directory) != directory.rstrip("/") or ".." in directory:
        raise UpgradeError(f"{directory}: not a plain absolute path")
    if os.path.realpath(directory) != directory.rstrip("/"):
        raise UpgradeError(f"{directory}: a symlink on the way: not run")
    try:
        st = os.lstat(directory)
    except OSError as exc:
        raise UpgradeError(f"{directory}: {exc.strerror or exc}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise UpgradeError(f"{directory}: not a directory")
    owner = st.st_uid
    if owner == 0:
        raise UpgradeError(f"{directory} is owned by root: its package manager would run its files as root; run the "
                           "command yourself if you trust every file in it")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UpgradeError(f"{directory} is writable by group or others: not run as its owner")
    parent = os.path.dirname(directory.rstrip("/"))
    while True:
        try:
            up = os.lstat(parent)
        except OSError as exc:
            raise UpgradeError(f"{parent}: {exc.strerror or exc}") from exc
        # a root-owned sticky directory (/tmp) lets nobody rename or remove what another account owns
        sticky = up.st_uid == 0 and up.st_mode & stat.S_ISVTX
        if up.st_uid not in (0, owner) or (up.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky):
            raise UpgradeError(f"{parent} (above {directory}) can be changed by another account than its owner: "
                               "not run")
        if parent == "/":
            break
        parent = os.path.dirname(parent)
    return owner, _identity(st)


def _environment_dir(manager: str, argv: list[str], cwd: str | None) -> str | None:
    """The directory whose owner runs the upgrade: the virtualenv of a venv's pip, the project of npm and
    composer (None: a system-wide manager, run as root)."""
    if manager == "pip" and argv[0].endswith("/bin/pip"):
        return os.path.dirname(os.path.dirname(argv[0]))
    if manager in ("npm", "composer") and argv[1:3] != ["update", "-g"]:
        if not cwd:
            raise UpgradeError(f"a {manager} upgrade runs in its project: the step names none")
        return cwd
    return None


def prepare(step: Action, passthrough: Sequence[str] = ()) -> Upgrade:
    """The step as ``fix`` runs it (UpgradeError when it is not one hostguard prints, or not safe here).
    ``passthrough``: names of variables of this process given to an owner's run (``[vulns] upgrade_env``)."""
    args = dict(step.args)
    manager = args.get("manager", "")
    try:
        argv = shlex.split(args.get("command", ""))
    except ValueError as exc:
        raise UpgradeError(f"unreadable command: {exc}") from exc
    if step.action == "refresh":
        if manager not in SYSTEM_PROGRAM or tuple(argv) not in REFRESH or argv[0] != manager:
            raise UpgradeError(f"not a package list refresh: {shlex.join(argv)}")
        return Upgrade(manager, tuple(argv), env={"DEBIAN_FRONTEND": "noninteractive"} if manager == "apt-get" else {})
    if manager not in SYSTEM_PROGRAM and manager not in ENVIRONMENT_MANAGERS:
        raise UpgradeError(f"no upgrade known for package manager {manager!r}")
    _check_shape(manager, argv)
    env: dict[str, str] = {}
    if manager == "apt-get":
        argv = [argv[0], "-y", "--no-remove", "-o", "Dpkg::Options::=--force-confold", *argv[1:]]
        env["DEBIAN_FRONTEND"] = "noninteractive"
    elif manager in ("dnf", "yum"):
        argv = [argv[0], "-y", *argv[1:]]
    elif manager == "pip" and PIP_SYSTEM.fullmatch(argv[0]):
        argv = [argv[0], "-I", *argv[1:]]
    directory = _environment_dir(manager, argv, args.get("cwd") or None)
    if directory is None:
        return Upgrade(manager, tuple(argv), "/", env=env)
    uid, identity = _owned_environment(directory)
    gid, home = _account(uid)
    clean = {"PATH": SAFE_PATH, "HOME": home if os.path.isabs(home) else directory, "LANG": "C.UTF-8",
             **{name: os.environ[name] for name in passthrough if name in os.environ}}
    return Upgrade(manager, tuple(argv), directory, uid, gid, clean, True, identity)


def _recheck(upgrade: Upgrade) -> None:
    if upgrade.identity is None:
        return
    try:
        st = os.lstat(upgrade.cwd)
    except OSError as exc:
        raise UpgradeError(f"{upgrade.cwd}: {exc.strerror or exc}") from exc
    if _identity(st) != upgrade.identity:
        raise UpgradeError(f"{upgrade.cwd} changed since it was checked: not run")


def run(upgrade: Upgrade, timeout: float = TIMEOUT, base_env: Mapping[str, str] | None = None) -> tuple[bool, str]:
    """Run it; (whether it succeeded, the end of its output). A run past ``timeout`` is stopped with its whole
    process group (dpkg, install scripts)."""
    try:
        _recheck(upgrade)
    except UpgradeError as exc:
        return False, str(exc)
    env = dict(upgrade.env) if upgrade.clean_env else {**(base_env if base_env is not None else os.environ),
                                                       **upgrade.env}
    try:
        proc = subprocess.Popen(list(upgrade.argv), cwd=upgrade.cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, errors="replace",
                                start_new_session=True, user=upgrade.uid, group=upgrade.gid,
                                extra_groups=[] if upgrade.uid is not None else None)
    except FileNotFoundError:
        return False, f"{upgrade.argv[0]}: not installed"
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"{upgrade.argv[0]}: {exc}"
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        after = " (then run `dpkg --configure -a`)" if upgrade.manager == "apt-get" else ""
        return False, f"{upgrade.argv[0]}: not done within {timeout:g} s: stopped with what it started{after}"
    text = " ".join(out.split())
    return proc.returncode == 0, text[-500:]
