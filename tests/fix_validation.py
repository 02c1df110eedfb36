"""Running the real tools on a patched copy of a fixture tree, isolated from this machine's own config.

``chpasswd -R``, ``usermod -R``, ``pwconv -R`` and ``pwck -R`` chroot into the tree, so the tree must be a
usable root: :func:`usable_root` adds the merged-/usr links and the PAM service file the fixtures lack, and
:func:`in_tree` runs a command in a private mount namespace (``unshare --mount``) where the tree's /usr is
this machine's /usr, read-only (PAM modules, NSS, crypt, the cracklib dictionary). Nothing is mounted or
written outside the tree; the namespace disappears with the command.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

from hostguard.host.base import RootHost
from hostguard.remediation import Command, Remediation
from hostguard.respond.apply import apply
from tests.conftest import run_one

SHADOW_TOOLS = ("usermod", "passwd", "pwconv", "chpasswd", "pwck", "chage")


def usable_root(tree: Path) -> Path:
    """Make ``tree`` a root the shadow tools can chroot into (only inside :func:`in_tree`)."""
    for name in ("usr", "var/cache/cracklib", "proc"):
        (tree / name).mkdir(parents=True, exist_ok=True)
    for name in ("bin", "sbin", "lib", "lib64"):
        link = tree / name
        if not link.exists() and not link.is_symlink():
            link.symlink_to(f"usr/{name}")
    for service in ("chpasswd", "passwd"):  # Debian's own service files: both use the password stack
        path = tree / "etc/pam.d" / service
        if not path.exists():
            path.write_text("@include common-password\n")
    return tree


def in_tree(tree: Path, argv: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (this machine's binary, which chroots into ``tree`` itself) with /usr bound into the tree."""
    mounts = [f"mount --bind /usr {shlex.quote(str(tree / 'usr'))}",
              f"mount -o remount,bind,ro {shlex.quote(str(tree / 'usr'))}"]
    if Path("/var/cache/cracklib").is_dir():
        mounts.append(f"mount --bind -o ro /var/cache/cracklib {shlex.quote(str(tree / 'var/cache/cracklib'))}")
    script = " && ".join([*mounts, 'exec "$@"'])
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv],
                          input=stdin, capture_output=True, text=True, timeout=60, check=False)


def rooted(step: Command, tree: Path) -> list[str]:
    """A shadow-utils step's argv made to act on ``tree`` (``usermod -R TREE ...``)."""
    assert step.argv[0] in SHADOW_TOOLS and not step.live_only, step
    return [step.argv[0], "-R", str(tree), *step.argv[1:]]


def run_steps(remediation: Remediation, tree: Path) -> None:
    """Apply the file steps, then run every command step inside the tree; each command must succeed."""
    left = apply(remediation.steps, str(tree)).not_run
    usable_root(tree)
    for step in left:
        assert isinstance(step, Command)
        done = in_tree(tree, rooted(step, tree))
        assert done.returncode == 0, (step.argv, done.stderr)


def set_password(tree: Path, user: str, password: str, *extra: str) -> tuple[str, str]:
    """``chpasswd -R tree`` (through the tree's PAM stack unless ``extra`` says -c METHOD): the new hash in
    the tree's /etc/shadow and what chpasswd said (pam_pwquality's verdict: BAD PASSWORD lines)."""
    done = in_tree(usable_root(tree), ["chpasswd", "-R", str(tree), *extra], stdin=f"{user}:{password}\n")
    assert done.returncode == 0, done.stderr
    for line in (tree / "etc/shadow").read_text().splitlines():
        if line.split(":", 1)[0] == user:
            return line.split(":")[1], done.stderr
    raise AssertionError(f"{user} not in the tree's shadow")


def pwscore(tree: Path, password: str) -> tuple[int, str]:
    """libpwquality's own verdict on ``password`` under the tree's pwquality configuration (chrooted)."""
    done = in_tree(usable_root(tree), ["chroot", str(tree), "pwscore"], stdin=password + "\n")
    return done.returncode, (done.stdout + done.stderr).strip()


def findings(tree: Path, check_id: str) -> list[str]:
    """Titles of ``check_id``'s findings on the tree now."""
    return [f.title for f in run_one(check_id, RootHost(str(tree)))[0]]
