"""rootkit.kernel_module: loaded modules located in a real module tree whose packages dpkg itself installed.

No kernel here can load a module (this machine's is monolithic), so the kernel's side is the one written part:
a directory holding ``proc/modules``, ``proc/sys/kernel/osrelease`` and ``sys/module/<name>/taint`` as the
kernel writes them, beside ``lib/modules/<release>/`` and ``var/lib/dkms``. The package side is real: a
.deb built with dpkg-deb and installed into the tree by ``dpkg --root``. The collector reads the tree through
a :class:`RootHost` (``loaded_modules``); the check gets the result as its fact. The live host is asked too:
without /proc/modules the check must say unsupported, not "nothing found".
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hostguard.engine.facts import Fact
from hostguard.findings import Finding, Severity
from hostguard.host.base import LiveHost, RootHost
from hostguard.host.kernel import KERNEL_MODULES, loaded_modules
from tests.conftest import need_root, need_tool, run_one

RELEASE = "6.1.0-hgtest-amd64"
BASE = f"lib/modules/{RELEASE}"
KO = b"\x7fELF not a real module: hostguard test data\n"
# name -> (file under BASE as modules.dep names it; None: not in the tree)
TREE = {"hgstock": "kernel/drivers/misc/hgstock.ko",         # installed by the hgkmod package
        "hgdkms": "updates/dkms/hgdkms.ko",                   # DKMS-built, source from the hgdkms-dkms package
        "hgloose": "updates/dkms/hgloose.ko.xz",              # DKMS-built, source dropped by a vendor installer
        "hg_vendor": "extra/hg-vendor.ko.zst",                # copied into the tree by hand
        "ext4": "kernel/fs/ext4/ext4.ko"}                     # in the tree, not loaded: never reported


def proc_line(name: str, taint: str = "", users: str = "-", state: str = "Live") -> str:
    """A /proc/modules line as the kernel writes it (address zeroed, as for a non-root reader)."""
    return f"{name} 16384 {0 if users == '-' else users.count(',')} {users} {state} 0x0000000000000000" + (
        f" ({taint})" if taint else "") + "\n"


@pytest.fixture(scope="module")
def module_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tree with both packages installed by dpkg and everything else written as the tools would."""
    need_tool("dpkg", "dpkg-deb")
    need_root("dpkg --root")
    base = tmp_path_factory.mktemp("kmod")
    root = base / "root"
    packages = {"hgkmod": {f"{BASE}/{TREE['hgstock']}": KO},
                "hgdkms-dkms": {"usr/src/hgdkms-1.0/dkms.conf": b'PACKAGE_NAME="hgdkms"\nPACKAGE_VERSION="1.0"\n'}}
    for sub in ("var/lib/dpkg/info", "var/lib/dpkg/updates"):
        (root / sub).mkdir(parents=True)
    (root / "var/lib/dpkg/status").touch()
    for package, files in packages.items():
        pkg = base / package
        for rel, data in files.items():
            (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
            (pkg / rel).write_bytes(data)
        (pkg / "DEBIAN").mkdir()
        (pkg / "DEBIAN/control").write_text(f"Package: {package}\nVersion: 1.0\nArchitecture: all\n"
                                            "Maintainer: Test <test@example.test>\nDescription: module test\n")
        subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(pkg), str(base / f"{package}.deb")], check=True,
                       capture_output=True)
        subprocess.run(["dpkg", "--root", str(root), "--force-script-chrootless", "--force-not-root", "-i",
                        str(base / f"{package}.deb")], check=True, capture_output=True)
    assert (root / BASE / TREE["hgstock"]).read_bytes() == KO
    for name in ("hgdkms", "hgloose", "hg_vendor", "ext4"):
        (root / BASE / TREE[name]).parent.mkdir(parents=True, exist_ok=True)
        (root / BASE / TREE[name]).write_bytes(KO)
    (root / BASE / "modules.dep").write_text("".join(
        f"{path}:{' kernel/fs/mbcache.ko' if name == 'ext4' else ''}\n" for name, path in TREE.items()))
    (root / BASE / "modules.builtin").write_text("kernel/drivers/char/hgbuilt.ko\nkernel/lib/crc32c.ko\n")
    for package, version in (("hgdkms", "1.0"), ("hgloose", "2.0")):
        built = root / f"var/lib/dkms/{package}/{version}/{RELEASE}/x86_64/module"
        built.mkdir(parents=True)
        (built / Path(TREE[package]).name).write_bytes(KO)
    (root / "usr/src/hgloose-2.0").mkdir(parents=True)
    (root / "usr/src/hgloose-2.0/dkms.conf").write_text('PACKAGE_NAME="hgloose"\n')
    (root / "proc/sys/kernel").mkdir(parents=True)
    (root / "proc/sys/kernel/osrelease").write_text(RELEASE + "\n")
    return root


def loaded(tree: Path, dest: Path, lines: str, taints: dict[str, str]) -> Path:
    """A copy of the tree whose kernel has ``lines`` in /proc/modules and ``taints`` in /sys/module."""
    shutil.copytree(tree, dest, symlinks=True)
    (dest / "proc/modules").write_text(lines)
    for name, letters in taints.items():
        (dest / f"sys/module/{name}").mkdir(parents=True)
        (dest / f"sys/module/{name}/taint").write_text(letters + "\n")
    return dest


def scan(tree: Path) -> dict[str, Finding]:
    host = RootHost(str(tree))
    given: dict[Fact[object], object] = {KERNEL_MODULES: loaded_modules(host)}
    found, skipped = run_one("rootkit.kernel_module", host, given=given)
    assert skipped == []
    return {str(f.target["kernel_module"]): f for f in found}


def test_modules_from_outside_the_tree_or_no_package_are_reported(module_tree: Path, tmp_path: Path) -> None:
    tree = loaded(module_tree, tmp_path / "t", proc_line("hgrootkit", "OE") + proc_line("hg_vendor") +
                  proc_line("hgloose", "OE") + proc_line("hgbuilt", "O", "hgrootkit,") + proc_line("hgstock") +
                  proc_line("hgdkms", "OE"), {"hg_vendor": "O", "hgrootkit": "OE"})
    found = scan(tree)
    assert {name: f.severity for name, f in found.items()} == {
        "hgrootkit": Severity.HIGH, "hgbuilt": Severity.HIGH, "hg_vendor": Severity.MEDIUM, "hgloose": Severity.INFO}
    rootkit = found["hgrootkit"].evidence
    assert rootkit["path"] is None and rootkit["taint"] == "OE" and rootkit["builtin_name"] is False
    assert set(rootkit["taint_meaning"]) == {"O", "E"} and "out-of-tree" in rootkit["taint_meaning"]["O"]
    assert found["hgbuilt"].evidence["builtin_name"] is True and "built-in" in found["hgbuilt"].title
    assert found["hgbuilt"].evidence["refcount"] == 1 and found["hgbuilt"].evidence["used_by"] == ["hgrootkit"]
    vendor = found["hg_vendor"].evidence
    assert vendor["path"] == f"/{BASE}/{TREE['hg_vendor']}" and vendor["package"] is None and vendor["taint"] == "O"
    assert vendor["package_database"] == "dpkg" and vendor["kernel_release"] == RELEASE
    assert found["hgloose"].evidence["dkms"] == {"package": "hgloose", "version": "2.0",
                                                 "source": "/usr/src/hgloose-2.0/dkms.conf", "source_package": None}
    for f in found.values():  # by hand only: no step may unload a module that could take the kernel down
        assert f.remediation.steps == () and f.remediation.manual and "modprobe -r" in f.remediation.manual
        assert f.target == {"kind": "host", "kernel_module": f.evidence["module"]}


def test_packaged_and_packaged_dkms_modules_are_quiet(module_tree: Path, tmp_path: Path) -> None:
    """Near miss: the same tree, loaded modules a package accounts for (one built by DKMS from a packaged
    source, tainted OE like any DKMS module): nothing to report, and nothing left unjudged."""
    tree = loaded(module_tree, tmp_path / "t", proc_line("hgstock") + proc_line("hgdkms", "OE", "hgstock,"),
                  {"hgdkms": "OE"})
    mods = loaded_modules(RootHost(str(tree)))
    assert [(m.name, m.owner, m.dkms.source_owner if m.dkms else None) for m in mods.modules] == [
        ("hgstock", "hgkmod", None), ("hgdkms", None, "hgdkms-dkms")]
    assert scan(tree) == {}


def test_without_a_package_database_only_strays_are_judged(module_tree: Path, tmp_path: Path) -> None:
    tree = loaded(module_tree, tmp_path / "t", proc_line("hgrootkit", "OE") + proc_line("hg_vendor"), {})
    shutil.rmtree(tree / "var/lib/dpkg")
    host = RootHost(str(tree))
    found, skipped = run_one("rootkit.kernel_module", host, given={KERNEL_MODULES: loaded_modules(host)})
    assert [f.target["kernel_module"] for f in found] == ["hgrootkit"]
    assert [(s.reason, "hg_vendor" in s.detail) for s in skipped] == [("unsupported", True)]


def test_a_tree_without_modules_dep_is_unsupported_not_clean(module_tree: Path, tmp_path: Path) -> None:
    tree = loaded(module_tree, tmp_path / "t", proc_line("hgrootkit", "OE"), {})
    (tree / BASE / "modules.dep").unlink()
    found, skipped = run_one("rootkit.kernel_module", RootHost(str(tree)),
                             given={KERNEL_MODULES: _unavailable_or(RootHost(str(tree)))})
    assert found == [] and [s.reason for s in skipped] == ["unsupported"] and "modules.dep" in skipped[0].detail


def _unavailable_or(host: RootHost) -> object:
    from hostguard.host.base import Unavailable

    try:
        return loaded_modules(host)
    except Unavailable as exc:
        return exc  # a given fact holding Unavailable is what the engine keeps for a fact that could not be had


def test_a_broken_proc_modules_is_one_clear_error(module_tree: Path, tmp_path: Path) -> None:
    from hostguard.host.base import HostError

    tree = loaded(module_tree, tmp_path / "t", proc_line("hgstock") + "hgbad 12 x\n", {})
    with pytest.raises(HostError, match=r"^/proc/modules line 2: 3 fields") as info:
        loaded_modules(RootHost(str(tree)))
    assert "\n" not in str(info.value)


def test_a_kernel_without_proc_modules_is_unsupported(module_tree: Path, tmp_path: Path) -> None:
    """A monolithic kernel: the tree has modules on disk but no /proc/modules (nothing can be loaded)."""
    tree = loaded(module_tree, tmp_path / "t", "", {})
    (tree / "proc/modules").unlink()
    found, skipped = run_one("rootkit.kernel_module", RootHost(str(tree)),
                             given={KERNEL_MODULES: _unavailable_or(RootHost(str(tree)))})
    assert found == [] and [s.reason for s in skipped] == ["unsupported"]
    assert "/proc/modules" in skipped[0].detail and "monolithic" in skipped[0].detail


def test_the_live_kernel_is_read_or_said_unsupported() -> None:
    """Live, through the fact's own collector: this machine's monolithic kernel (no /proc/modules) is skipped as
    unsupported, saying why; on a kernel with modules, every module reported is one /proc/modules lists."""
    need_root("reading every module's taint and the package database")
    found, skipped = run_one("rootkit.kernel_module", LiveHost())
    if not Path("/proc/modules").exists():
        assert found == []
        assert [(s.reason, s.check) for s in skipped] == [("unsupported", "rootkit.kernel_module")]
        assert "/proc/modules" in skipped[0].detail and "monolithic" in skipped[0].detail
        return
    listed = {line.split()[0] for line in Path("/proc/modules").read_text().splitlines() if line.strip()}
    assert {f.target["kernel_module"] for f in found} <= listed
    assert all("monolithic" not in s.detail for s in skipped)


def test_under_root_the_check_says_live_only(module_tree: Path) -> None:
    found, skipped = run_one("rootkit.kernel_module", RootHost(str(module_tree)))
    assert found == [] and [s.reason for s in skipped] == ["live_only"]
