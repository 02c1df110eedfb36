"""The FTP prober against a real vsftpd on loopback: anonymous login on is "no password checked", off is not
found; a local (PAM, system) account is refused before any connection."""

from __future__ import annotations

import ftplib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostguard.probes.base import Endpoint, ProbeError
from hostguard.probes.ftp import FtpProber
from hostguard.probes.session import NO_PASSWORD, NOT_FOUND, Limits, probe_account, service_guesses
from tests.conftest import need_root, need_tool
from tests.host.services.helpers import free_port, running, wait_for

FAST = Limits(per_account=100, per_second=1000.0)


@pytest.fixture
def dirs() -> Iterator[tuple[Path, Path]]:
    """An anonymous root and an empty secure_chroot_dir, root-owned and not writable by others (vsftpd insists)."""
    base = Path(tempfile.mkdtemp(prefix="hostguard-ftpprobe-"))
    try:
        base.chmod(0o755)
        (base / "anon").mkdir(mode=0o755)
        (base / "empty").mkdir(mode=0o755)
        yield base / "anon", base / "empty"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _accepts(port: int) -> bool:
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", port, timeout=2)
    ftp.close()
    return True


@pytest.mark.parametrize(("settings", "outcome"), [("anonymous_enable=YES\nlocal_enable=NO\n", NO_PASSWORD),
                                                   ("anonymous_enable=NO\nlocal_enable=YES\n", NOT_FOUND)])
def test_anonymous_login(tmp_path: Path, dirs: tuple[Path, Path], settings: str, outcome: str) -> None:
    need_root("vsftpd (it chroots)")
    need_tool("vsftpd")
    anon, empty = dirs
    port = free_port()
    config = tmp_path / "vsftpd.conf"
    config.write_text(f"listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port={port}\nbackground=NO\n"
                      f"anon_root={anon}\nsecure_chroot_dir={empty}\nseccomp_sandbox=NO\nxferlog_enable=NO\n"
                      # a PAM service that does not exist: PAM's "other" policy, never the machine's vsftpd one
                      "pam_service_name=hostguard-test-none\nwrite_enable=NO\n" + settings)
    with running(["vsftpd", str(config)], tmp_path / "log"):
        wait_for(lambda: _accepts(port), what="vsftpd")
        result = probe_account(FtpProber(Endpoint.tcp("127.0.0.1", port)), "anonymous",
                               service_guesses("ftp", "anonymous"), FAST)
    # anonymous takes any password when on: the canary is the whole answer, no guesses follow it
    assert (result.outcome, result.account, result.attempts) == (outcome, "anonymous", 1)


def test_local_accounts_are_refused_before_any_connection() -> None:
    """A port nothing listens on: a connection attempt would be an Error answer, the refusal comes first."""
    prober = FtpProber(Endpoint.tcp("127.0.0.1", free_port()))
    with pytest.raises(ProbeError, match="FTP account 'root' may be a system account"):
        prober.try_password("root", "x")
    confirmed = FtpProber(Endpoint.tcp("127.0.0.1", free_port()), virtual_users=frozenset({"shop"}))
    assert confirmed.try_password("shop", "x").__class__.__name__ == "Error"    # tried (nothing listens there)


def test_ftp_over_a_unix_socket_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="FTP is probed over loopback TCP"):
        FtpProber(Endpoint.unix(str(tmp_path / "x.sock")))
