"""``Action("upgrade")`` steps carried out by ``hostguard fix``: the package manager's own command, as printed.

A vulnerable package's fix is the exact command of the package manager that owns it (``vulns.findings``,
``vulns.pending*``). ``fix`` runs that command and nothing else, with three differences an unattended run
needs and a pasted one does not:

* apt-get, dnf and yum get ``-y`` (the owner already said yes to this fix; without it a run whose upgrade
  pulls in a new dependency stops at the question), and apt runs with ``DEBIAN_FRONTEND=noninteractive``
  and ``--force-confold`` so that a configuration file the owner changed is kept, never replaced;
* a command is accepted only in the shapes hostguard prints (the manager's name as the program, its own
  subcommand): a step whose command was tampered with, or that names another program, is refused;
* a language environment's package manager (a virtualenv's ``pip``, ``npm`` and ``composer`` in a project)
  runs as the owner of that environment, not as root: the environment's files (``bin/pip`` itself, the
  project's install scripts) are whatever that account wrote, and running them as root would hand it root.
  A root-owned environment that other accounts can write is refused for the same reason.

An upgrade is not undone by ``fix --undo`` (the old version may no longer be downloadable); the re-scan
after it is what says whether it worked.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import stat
import subprocess
from dataclasses import dataclass, field

from hostguard.remediation import Action

__all__ = ["Upgrade", "UpgradeError", "prepare", "run"]

TIMEOUT = 1800  # a large upgrade (a kernel, many libraries) takes minutes
# program and subcommand of each manager's printed command
SHAPES: dict[str, tuple[re.Pattern[str], tuple[str, ...]]] = {
    "apt-get": (re.compile(r"apt-get"), ("install", "--only-upgrade")),
    "dnf": (re.compile(r"dnf"), ("upgrade",)),
    "yum": (re.compile(r"yum"), ("update",)),
    "apk": (re.compile(r"apk"), ("upgrade",)),
    "pip": (re.compile(r"(/.+/bin/pip|python3(\.\d+)?)"), ()),
    "npm": (re.compile(r"npm"), ("update",)),
    "composer": (re.compile(r"composer"), ("update",)),
}
ENVIRONMENT_MANAGERS = frozenset({"pip", "npm", "composer"})


class UpgradeError(Exception):
    """The step cannot be run as it stands (an unknown manager, a command of another shape, an unsafe place)."""


@dataclass(frozen=True)
class Upgrade:
    """One upgrade as it will run: ``argv`` in ``cwd`` as ``uid``/``gid`` (None: as hostguard runs), with
    ``env`` added to the environment."""

    manager: str
    argv: tuple[str, ...]
    cwd: str | None = None
    uid: int | None = None
    gid: int | None = None
    env: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """The command as it runs, for people and the fix record."""
        who = f" as uid {self.uid}" if self.uid is not None else ""
        where = f" in {self.cwd}" if self.cwd else ""
        return f"{shlex.join(self.argv)}{where}{who}"


def _check_shape(manager: str, argv: list[str]) -> None:
    program, sub = SHAPES[manager]
    if not argv or not program.fullmatch(argv[0]):
        raise UpgradeError(f"a {manager} upgrade runs {manager}, not {argv[0] if argv else 'nothing'!r}")
    if manager == "pip":
        pip_args = argv[1:] if argv[0].endswith("/bin/pip") else argv[3:] if argv[1:3] == ["-m", "pip"] else None
        if pip_args is None or pip_args[:2] != ["install", "-U"] or len(pip_args) < 3:
            raise UpgradeError(f"not a pip upgrade: {shlex.join(argv)}")
        return
    if tuple(argv[1:1 + len(sub)]) != sub or len(argv) <= 1 + len(sub):
        raise UpgradeError(f"not a {manager} upgrade: {shlex.join(argv)}")
    if any(a.startswith("-") and a != "-g" for a in argv[1 + len(sub):]):
        raise UpgradeError(f"a {manager} upgrade step names packages, not options: {shlex.join(argv)}")


def _environment(manager: str, argv: list[str], cwd: str | None) -> str | None:
    """The directory whose owner runs the upgrade: the virtualenv of a venv's pip, the project of npm and
    composer (None: a system-wide manager, run as root)."""
    if manager == "pip" and argv[0].endswith("/bin/pip"):
        return os.path.dirname(os.path.dirname(argv[0]))
    if manager in ("npm", "composer"):
        return cwd
    return None


def _owner(directory: str) -> tuple[int, int]:
    """The owner of ``directory`` (not followed if it is a link); refused when others than its owner (and
    root) may write it while root owns it."""
    try:
        st = os.lstat(directory)
    except OSError as exc:
        raise UpgradeError(f"{directory}: {exc.strerror or exc}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise UpgradeError(f"{directory}: not a directory")
    if st.st_uid == 0 and st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UpgradeError(f"{directory}: owned by root but writable by others: its package manager is not run as "
                           "root")
    return st.st_uid, st.st_gid


def prepare(step: Action) -> Upgrade:
    """The upgrade ``step`` asks for, as ``fix`` runs it (UpgradeError when it is not one hostguard prints)."""
    args = dict(step.args)
    manager = args.get("manager", "")
    if manager not in SHAPES:
        raise UpgradeError(f"no upgrade known for package manager {manager!r}")
    try:
        argv = shlex.split(args.get("command", ""))
    except ValueError as exc:
        raise UpgradeError(f"unreadable command: {exc}") from exc
    _check_shape(manager, argv)
    cwd = args.get("cwd") or None
    env: dict[str, str] = {}
    if manager == "apt-get":
        argv = [argv[0], "-y", "-o", "Dpkg::Options::=--force-confold", *argv[1:]]
        env["DEBIAN_FRONTEND"] = "noninteractive"
    elif manager in ("dnf", "yum"):
        argv = [argv[0], "-y", *argv[1:]]
    uid = gid = None
    directory = _environment(manager, argv, cwd)
    if directory is not None:
        owner_uid, owner_gid = _owner(directory)
        if owner_uid != os.geteuid():
            uid, gid = owner_uid, owner_gid
            try:
                env["HOME"] = pwd.getpwuid(owner_uid).pw_dir
            except KeyError:
                env["HOME"] = directory
    return Upgrade(manager, tuple(argv), cwd, uid, gid, env)


def run(upgrade: Upgrade, timeout: float = TIMEOUT) -> tuple[bool, str]:
    """Run it; (whether it succeeded, the end of its output)."""
    env = {**os.environ, **upgrade.env}
    try:
        done = subprocess.run(list(upgrade.argv), cwd=upgrade.cwd, env=env, capture_output=True, text=True,
                              errors="replace", timeout=timeout, check=False, stdin=subprocess.DEVNULL,
                              user=upgrade.uid, group=upgrade.gid,
                              extra_groups=[] if upgrade.uid is not None else None)
    except FileNotFoundError:
        return False, f"{upgrade.argv[0]}: not installed"
    except subprocess.TimeoutExpired:
        return False, f"{upgrade.argv[0]}: not done within {timeout:g} s"
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"{upgrade.argv[0]}: {exc}"
    text = " ".join((done.stdout + done.stderr).split())
    return done.returncode == 0, text[-500:]
