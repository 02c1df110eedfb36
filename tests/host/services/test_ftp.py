"""The FTP readers: vsftpd against a real vsftpd on loopback (does an anonymous login succeed when we say
anonymous is on?), proftpd on written trees (proftpd-core conflicts with vsftpd in Debian, so one machine has
only one of them)."""

from __future__ import annotations

import ftplib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.host.base import Host, HostError, LiveHost
from hostguard.host.services.common import AuthKind, Scope, Setting
from hostguard.host.services.ftp import PROFTPD_CONFIG, VSFTPD_CONFIG, collect_ftp, parse_proftpd, parse_vsftpd
from hostguard.host.web.model import Where
from tests.conftest import need_root, need_tool
from tests.host.services.helpers import anonymous_ftp_login, free_port, line_of, running, tree, wait_for

VSFTPD_CASES = {
    "anonymous_on": "anonymous_enable=YES\nlocal_enable=NO\n",
    # "anonymous" is then a local account name: no such account exists, the login fails ("Login incorrect")
    "anonymous_off": "anonymous_enable=no\nlocal_enable=YES\n",
    "compiled_default_allows_anonymous": "local_enable=NO\n",
    "last_line_wins": "anonymous_enable=NO\nlocal_enable=YES\nanonymous_enable=TRUE\n",
}


@pytest.fixture
def dirs() -> Iterator[tuple[Path, Path]]:
    """An anonymous root and an empty secure_chroot_dir, owned by root and not writable by others (vsftpd
    refuses anything else)."""
    base = Path(tempfile.mkdtemp(prefix="hostguard-ftp-"))
    try:
        base.chmod(0o755)
        (base / "anon").mkdir(mode=0o755)
        (base / "anon" / "hello.txt").write_text("hello\n")
        (base / "empty").mkdir(mode=0o755)
        yield base / "anon", base / "empty"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _accepts(port: int) -> bool:
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", port, timeout=2)
    ftp.close()
    return True


@pytest.mark.parametrize("case", sorted(VSFTPD_CASES))
def test_vsftpd_reader_agrees_with_a_real_vsftpd(tmp_path: Path, dirs: tuple[Path, Path], case: str) -> None:
    need_root("vsftpd (it chroots)")
    need_tool("vsftpd")
    anon, empty = dirs
    port = free_port()
    config = tmp_path / "vsftpd.conf"
    config.write_text(f"listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port={port}\nbackground=NO\n"
                      f"anon_root={anon}\nsecure_chroot_dir={empty}\nseccomp_sandbox=NO\nxferlog_enable=NO\n"
                      # a PAM service that does not exist: PAM's "other" policy, never the machine's vsftpd one
                      "pam_service_name=hostguard-test-none\nwrite_enable=NO\n" + VSFTPD_CASES[case])
    ours = parse_vsftpd(Host("/"), str(config))
    assert ours is not None
    assert [(i.address, i.port, i.scope) for i in ours.listening.listens] == [("127.0.0.1", port, Scope.LOOPBACK)]
    with running(["vsftpd", str(config)], tmp_path / "log"):
        wait_for(lambda: _accepts(port), what="vsftpd")
        anonymous = anonymous_ftp_login(port)
    assert anonymous == (ours.anonymous.value == "yes")
    assert (ours.auth.kind is AuthKind.NONE) == anonymous


def test_vsftpd_values_and_lines(tmp_path: Path) -> None:
    host = tree(tmp_path, {VSFTPD_CONFIG: "listen_ipv6=YES\nanonymous_enable=YES\nanon_upload_enable=YES\n"
                                          "write_enable=YES\nlocal_enable=YES\nchroot_local_user=YES\n"})
    ours = parse_vsftpd(host)
    assert ours is not None
    assert ours.anonymous == Setting("yes", Where(VSFTPD_CONFIG, 2))
    assert ours.anonymous_upload == Setting("yes", Where(VSFTPD_CONFIG, 4))
    assert ours.chroot_local == Setting("yes", Where(VSFTPD_CONFIG, 6))
    assert ours.tls_required == Setting("no")          # ssl_enable is NO by default
    assert [i.label() for i in ours.listening.listens] == ["tcp [::]:21"]
    assert ours.listening.scope is Scope.WILDCARD
    assert ours.auth.kind is AuthKind.NONE and ours.auth.where == (Where(VSFTPD_CONFIG, 2),)


def test_vsftpd_plain_local_logins_are_weak_and_tls_is_the_near_miss(tmp_path: Path) -> None:
    plain = parse_vsftpd(tree(tmp_path / "a", {VSFTPD_CONFIG: "listen=YES\nanonymous_enable=NO\nlocal_enable=YES\n"}))
    assert plain is not None and plain.auth.kind is AuthKind.WEAK
    tls = parse_vsftpd(tree(tmp_path / "b", {VSFTPD_CONFIG: "listen=YES\nanonymous_enable=NO\nlocal_enable=YES\n"
                                                            "ssl_enable=YES\n"}))
    assert tls is not None and tls.auth.kind is AuthKind.PASSWORD
    assert tls.tls_required == Setting("yes")      # force_local_logins_ssl defaults to YES with ssl_enable


def test_vsftpd_inetd_mode_is_unknown_reach(tmp_path: Path) -> None:
    ours = parse_vsftpd(tree(tmp_path, {VSFTPD_CONFIG: "anonymous_enable=NO\nlocal_enable=YES\n"}))
    assert ours is not None
    assert ours.listening.scope is Scope.UNKNOWN
    assert ours.notes and "inetd" in ours.notes[0]


def test_vsftpd_debian_stock_config_through_live_host() -> None:
    need_tool("vsftpd")
    ours = parse_vsftpd(LiveHost())
    assert ours is not None
    assert ours.anonymous == Setting("no", Where(VSFTPD_CONFIG, line_of(VSFTPD_CONFIG, "anonymous_enable=")))
    assert ours.local_users.value == "yes" and ours.tls_required.value == "no"
    assert ours.listening.scope is Scope.WILDCARD           # listen_ipv6=YES: every address, v4 and v6
    assert ours.auth.kind is AuthKind.WEAK                  # local users log in over plain FTP


@pytest.mark.parametrize(("text", "message"), [
    ("anonymous_enable = YES\n", "vsftpd.conf:1: vsftpd reads 'anonymous_enable = YES' as an unrecognised variable"),
    ("anonymous_enable=MAYBE\n", "vsftpd.conf:1: anonymous_enable must be one of"),
    ("anonymous_enable=YES \n", "vsftpd.conf:1: bad bool value 'YES ' for anonymous_enable"),
    ("listen_port=ftp\n", "vsftpd.conf:1: listen_port must be a port number"),
    ("listen=YES\nlisten_ipv6=YES\n", "vsftpd.conf:2: listen and listen_ipv6 cannot both be YES"),
])
def test_vsftpd_malformed_config_is_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "vsftpd.conf"
    config.write_text(text)
    with pytest.raises(HostError) as err:
        parse_vsftpd(Host("/"), str(config))
    assert message in str(err.value) and "\n" not in str(err.value)


PROFTPD_MAIN = """\
Include /etc/proftpd/modules.conf
UseIPv6 on
ServerName "ftp.test"
Port 21
DefaultRoot ~
Include /etc/proftpd/conf.d/*.conf
"""


def test_proftpd_anonymous_block_is_a_hit(tmp_path: Path) -> None:
    host = tree(tmp_path, {
        PROFTPD_CONFIG: PROFTPD_MAIN, "/etc/proftpd/modules.conf": "# LoadModule mod_tls.c\n",
        "/etc/proftpd/conf.d/anon.conf": "<Anonymous ~ftp>\n  User ftp\n  <Directory *>\n    <Limit WRITE>\n"
                                         "      DenyAll\n    </Limit>\n  </Directory>\n</Anonymous>\n"})
    ours = parse_proftpd(host)
    assert ours is not None
    assert ours.anonymous == Setting("yes", Where("/etc/proftpd/conf.d/anon.conf", 1))
    assert ours.chroot_local == Setting("yes", Where(PROFTPD_CONFIG, 5))
    assert [i.label() for i in ours.listening.listens] == ["tcp [::]:21"]
    assert ours.auth.kind is AuthKind.NONE
    assert ours.files == (PROFTPD_CONFIG, "/etc/proftpd/modules.conf", "/etc/proftpd/conf.d/anon.conf")


def test_proftpd_near_miss_anonymous_login_denied_and_tls_required(tmp_path: Path) -> None:
    host = tree(tmp_path, {
        PROFTPD_CONFIG: PROFTPD_MAIN + "Include /etc/proftpd/tls.conf\n", "/etc/proftpd/modules.conf": "\n",
        "/etc/proftpd/tls.conf": "<IfModule mod_tls.c>\nTLSEngine on\nTLSRequired on\n</IfModule>\n",
        "/etc/proftpd/conf.d/anon.conf": "<Anonymous ~ftp>\n  <Limit LOGIN>\n    DenyAll\n  </Limit>\n</Anonymous>\n"})
    ours = parse_proftpd(host)
    assert ours is not None
    assert ours.anonymous == Setting("no", Where("/etc/proftpd/conf.d/anon.conf", 1))
    assert ours.tls_required == Setting("yes", Where("/etc/proftpd/tls.conf", 3))
    assert ours.auth.kind is AuthKind.PASSWORD


def test_proftpd_plain_logins_are_weak_and_bind_tight(tmp_path: Path) -> None:
    host = tree(tmp_path, {PROFTPD_CONFIG: "Port 2121\nSocketBindTight on\nDefaultAddress 192.0.2.21\n"})
    ours = parse_proftpd(host)
    assert ours is not None
    assert [(i.label(), i.scope) for i in ours.listening.listens] == [("tcp 192.0.2.21:2121", Scope.ADDRESS)]
    assert ours.auth.kind is AuthKind.WEAK


@pytest.mark.parametrize(("text", "message"), [
    ("<Anonymous ~ftp>\nUser ftp\n", "proftpd.conf:1: <anonymous> is never closed"),
    ("</Limit>\n", "proftpd.conf:1: </Limit> closes a section that is not open"),
    ("Include /etc/proftpd/nope.conf\n", "proftpd.conf:1: included file /etc/proftpd/nope.conf does not exist"),
    ('ServerName "x\n', "proftpd.conf:1: unterminated quote"),
    ("Port twenty-one\n", "proftpd.conf:1: Port must be a port number"),
])
def test_proftpd_malformed_config_is_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    host = tree(tmp_path, {PROFTPD_CONFIG: text})
    with pytest.raises(HostError) as err:
        parse_proftpd(host)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_none_installed(tmp_path: Path) -> None:
    assert collect_ftp(tree(tmp_path, {"/etc/hostname": "h\n"})) == ()


WORDS = st.sampled_from(["<Anonymous ~ftp>", "</Anonymous>", "<Limit LOGIN>", "</Limit>", "DenyAll", "Port 21",
                         "TLSEngine on", "TLSRequired on", "Include /etc/x", "\\", '"', "#", "<IfModule x>",
                         "</IfModule>", "SocketBindTight on", "DefaultAddress 192.0.2.1"])
VSF = st.sampled_from(["anonymous_enable=YES", "listen=YES", "listen_ipv6=YES", "listen_port=21", "ssl_enable=NO",
                       "local_enable=YES", "# x", "", "listen_address=192.0.2.1"])


@settings(max_examples=200, deadline=None)
@given(st.lists(WORDS | st.text(max_size=20), max_size=8), st.lists(VSF | st.text(max_size=20), max_size=8))
def test_garbage_gives_a_record_or_a_host_error(tmp_path_factory: pytest.TempPathFactory, pro: list[str],
                                                vsf: list[str]) -> None:
    host = tree(tmp_path_factory.mktemp("f"), {PROFTPD_CONFIG: "\n".join(pro), VSFTPD_CONFIG: "\n".join(vsf)})
    for parse in (parse_proftpd, parse_vsftpd):
        try:
            ours = parse(host)
        except HostError as exc:
            assert "\n" not in str(exc)
            continue
        assert ours is not None and ours.auth.kind in AuthKind
