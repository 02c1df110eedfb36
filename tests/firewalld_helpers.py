"""firewalld's own offline tool, run on a tree copy: the proof that hostguard's firewalld steps are what
firewalld accepts, and that hostguard reads the XML firewalld writes.

firewalld is never installed here (its service would own the machine's firewall from the next boot):
`scripts/install-system-deps.sh test` unpacks the firewalld and python3-firewall .debs into CACHE, and
`firewall-offline-cmd` runs from there with the system's python3 (it needs python3-gi, python3-dbus and
python3-nftables, which are plain libraries). Every run is confined three ways:

* ``--system-config``/``--default-config`` point it at the tree's /etc/firewalld and /usr/lib/firewalld;
* it runs in a new user, network and mount namespace (``unshare -rnm``), so even a code path that loaded
  rules could only reach an empty network namespace;
* in that mount namespace an empty tmpfs hides this machine's /etc/firewalld, /usr/lib/firewalld and
  /run/firewalld (when they exist), so this machine's own firewalld configuration is never read or written.

The stock zones and services come from the unpacked package at test time (never copied into the repo).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import need_tool

CACHE = Path(os.environ.get("HOSTGUARD_TEST_FIREWALLD", "/var/cache/hostguard-tests/firewalld"))
OFFLINE_CMD = CACHE / "usr/bin/firewall-offline-cmd"
DIST_PACKAGES = CACHE / "usr/lib/python3/dist-packages"
STOCK = CACHE / "usr/lib/firewalld"
PYTHON = "/usr/bin/python3"
HIDDEN = ("/etc/firewalld", "/usr/lib/firewalld", "/run/firewalld")
# Hide this machine's firewalld directories (or stop: never run the tool with them visible), then run it.
CONFINE = ('for d in {hidden}; do if [ -d "$d" ]; then mount -t tmpfs hostguard-test "$d" || exit 97; fi; done; '
           'exec "$@"')


def need_offline_cmd() -> None:
    """Skip (with the reason) when firewalld's unpacked offline tool or a library it imports is missing."""
    need_tool("unshare")
    if not OFFLINE_CMD.is_file() or not STOCK.is_dir():
        pytest.skip(reason=f"firewall-offline-cmd is not unpacked in {CACHE} "
                           "(scripts/install-system-deps.sh test unpacks it)")
    probe = subprocess.run([PYTHON, "-c", "import gi, dbus, nftables"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(reason="firewall-offline-cmd needs python3-gi, python3-dbus and python3-nftables "
                           f"(scripts/install-system-deps.sh test installs them): {probe.stderr.strip()[-200:]}")


def stock_tree(tree: Path) -> None:
    """Give ``tree`` firewalld's packaged defaults as its /usr/lib/firewalld (zones, services, policies)."""
    need_offline_cmd()
    dest = tree / "usr/lib/firewalld"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(STOCK, dest)


@dataclass(frozen=True)
class Result:
    """One run of firewall-offline-cmd."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def offline_cmd(tree: Path, *args: str) -> Result:
    """Run ``firewall-offline-cmd ARGS`` on ``tree``'s /etc/firewalld and /usr/lib/firewalld, confined."""
    need_offline_cmd()
    argv = (PYTHON, str(OFFLINE_CMD), f"--system-config={tree}/etc/firewalld",
            f"--default-config={tree}/usr/lib/firewalld", *args)
    done = confined(argv, {"PYTHONPATH": str(DIST_PACKAGES), "PYTHONDONTWRITEBYTECODE": "1"})
    return Result(tuple(args), done.returncode, done.stdout, done.stderr)


def confined(argv: tuple[str, ...], env: dict[str, str],
             hidden: tuple[str, ...] = HIDDEN) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in a new user, network and mount namespace where each existing directory of ``hidden`` is an
    empty tmpfs."""
    confine = CONFINE.format(hidden=" ".join(hidden))
    return subprocess.run(["unshare", "-rnm", "sh", "-c", confine, "-", *argv], capture_output=True, text=True,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", **env}, timeout=60)


# firewall-offline-cmd's names for options whose firewall-cmd name it keeps for lokkit (firewall-offline-cmd(1):
# its lokkit ``--remove-service`` acts on the default zone and refuses to be combined with ``--zone``).
OFFLINE_NAMES = {"--remove-service": "--remove-service-from-zone"}


def offline_argv(argv: tuple[str, ...]) -> tuple[str, ...]:
    """A ``firewall-cmd --permanent ...`` step as the same change made by firewall-offline-cmd (which only
    edits the permanent configuration, so ``--permanent`` goes)."""
    assert argv[0] == "firewall-cmd" and "--permanent" in argv, argv
    out = []
    for arg in argv[1:]:
        name, eq, value = arg.partition("=")
        if arg != "--permanent":
            out.append(OFFLINE_NAMES.get(name, name) + eq + value)
    return tuple(out)


@dataclass(frozen=True)
class ZoneView:
    """A zone as firewalld itself lists it (``--list-all-zones``)."""

    target: str
    services: frozenset[str]
    ports: frozenset[str]
    sources: frozenset[str]
    interfaces: frozenset[str]
    rich_rules: int


def zones_as_firewalld_reads_them(tree: Path) -> dict[str, ZoneView]:
    """Every zone of the tree, read by firewalld's own code."""
    out = offline_cmd(tree, "--list-all-zones")
    assert out.returncode == 0, out.stderr
    zones: dict[str, ZoneView] = {}
    for block in re.split(r"\n\s*\n", out.stdout.strip()):
        name, *lines = block.splitlines()
        fields = dict(line.strip().partition(":")[::2] for line in lines if not line.startswith("\t"))
        rich = [line for line in lines if line.startswith("\t")]  # after "rich rules:", one a line
        zones[name.split()[0]] = ZoneView(fields["target"].strip(), frozenset(fields["services"].split()),
                                          frozenset(fields["ports"].split()), frozenset(fields["sources"].split()),
                                          frozenset(fields["interfaces"].split()), len(rich))
    return zones
