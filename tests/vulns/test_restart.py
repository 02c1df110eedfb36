"""Patched, not in effect: the running kernel against the newest installed image, and a real process still
mapping a deleted library (in a directory the test owns, never the host's /usr/lib)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hostguard.host.base import LiveHost, RootHost, Unavailable
from hostguard.host.packages import parse_status
from hostguard.remediation import Command
from hostguard.vulns.restart import (
    DeletedMapping,
    deleted_library_findings,
    deleted_mappings,
    kernel_finding,
    running_kernel,
)

IMAGES = "".join(f"Package: {n}\nStatus: install ok {s}\nArchitecture: amd64\nVersion: {v}\n\n" for n, v, s in [
    ("linux-image-6.1.0-17-amd64", "6.1.69-1", "installed"),
    ("linux-image-6.1.0-18-amd64", "6.1.76-1", "installed"),
    ("linux-image-6.1.0-9-amd64-unsigned", "6.1.27-1", "installed"),
    ("linux-image-6.1.0-99-amd64", "6.1.99-1", "config-files"),  # removed: not a candidate
    ("linux-image-amd64", "6.1.76-1", "installed"),               # the metapackage: not an image
])


def test_an_older_running_kernel_is_a_finding_naming_the_newest() -> None:
    f = kernel_finding("6.1.0-17-amd64", parse_status(IMAGES))
    assert f is not None and f.evidence["newest_installed"] == "6.1.0-18-amd64"
    assert f.evidence["installed"] == ["6.1.0-17-amd64", "6.1.0-18-amd64", "6.1.0-9-amd64"]
    assert "Reboot" in f.remediation.summary


def test_running_the_newest_kernel_or_having_no_image_is_quiet() -> None:
    assert kernel_finding("6.1.0-18-amd64", parse_status(IMAGES)) is None
    assert kernel_finding("6.1.0-18-amd64", parse_status("Package: bash\nStatus: install ok installed\n"
                                                          "Version: 5.2.15-2+b2\n")) is None


def test_live_only(tmp_path: Path) -> None:
    with pytest.raises(Unavailable):
        running_kernel(RootHost(str(tmp_path)))
    with pytest.raises(Unavailable):
        deleted_mappings(RootHost(str(tmp_path)))
    assert running_kernel(LiveHost()) == subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()


def test_a_process_mapping_a_deleted_library_is_found_and_one_whose_library_remains_is_not(tmp_path: Path) -> None:
    libs = tmp_path / "lib"
    libs.mkdir()
    libz = next(p for p in (Path("/usr/lib/x86_64-linux-gnu/libz.so.1"), Path("/lib/x86_64-linux-gnu/libz.so.1"))
                if p.exists())
    gone, kept = libs / "libgone.so.1", libs / "libkept.so.1"
    shutil.copy(libz, gone)
    shutil.copy(libz, kept)
    code = "import ctypes, sys, time; ctypes.CDLL(sys.argv[1]); print('ok', flush=True); time.sleep(60)"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(p)], stdout=subprocess.PIPE, text=True)
             for p in (gone, kept)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ok"
        gone.unlink()
        time.sleep(0.1)
        found = [m for m in deleted_mappings(LiveHost(), (str(libs),)) if m.pid in {p.pid for p in procs}]
        assert [(m.pid, m.libraries) for m in found] == [(procs[0].pid, (str(gone),))]
        [finding] = deleted_library_findings(found)
        assert procs[0].pid in finding.evidence["pids"] and finding.evidence["libraries"] == [str(gone)]
        assert finding.target["kind"] == "process"
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_processes_of_one_service_are_one_finding_with_a_restart_command() -> None:
    found = deleted_library_findings([
        DeletedMapping(10, "/usr/sbin/nginx", "nginx.service", ("/usr/lib/x86_64-linux-gnu/libssl.so.3",)),
        DeletedMapping(11, "/usr/sbin/nginx", "nginx.service", ("/usr/lib/x86_64-linux-gnu/libcrypto.so.3",)),
        DeletedMapping(12, "/usr/local/bin/tool", None, ("/usr/lib/x86_64-linux-gnu/libz.so.1",))])
    assert [f.target for f in found] == [{"kind": "process", "exe": "/usr/local/bin/tool"},
                                         {"kind": "process", "unit": "nginx.service"}]
    nginx = found[1]
    assert nginx.evidence["pids"] == [10, 11] and len(nginx.evidence["libraries"]) == 2
    assert [s.argv for s in nginx.remediation.steps if isinstance(s, Command)] == [("systemctl", "restart", "nginx.service")]
    assert found[0].remediation.manual
