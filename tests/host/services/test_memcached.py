"""The memcached reader against Debian's own wrapper starting a real memcached: same options, same answers."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.host.base import Host, HostError, LiveHost
from hostguard.host.services.common import AuthKind, Scope, Setting
from hostguard.host.services.memcached import CONFIG, parse
from hostguard.host.web.model import Where
from tests.conftest import need_root, need_tool
from tests.host.services.helpers import free_port, line_of, running, tree, wait_for

WRAPPER = "/usr/share/memcached/scripts/systemd-memcached-wrapper"
CASES = {
    "several_listen_lines": "-p {port}\n-U 0 # no UDP\n-l 127.0.0.1\n-l 127.0.0.2,127.0.0.3\n-u memcache\n-m 16\n"
                            "logfile /var/log/memcached.log\n-d\n# -l 0.0.0.0\n",
    "long_options_and_joined_values": "--port={port}\n-l127.0.0.1\n--udp-port=0\n-u memcache -m 16\n",
    "unix_socket_only": "-s {d}/mc.sock\n-a 0700\n-u memcache\n-p {port}\n",
}


def _stats(address: tuple[str, int] | str) -> dict[str, str]:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(address)
        s.sendall(b"stats settings\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return {f[1]: f[2] for f in (line.split(" ", 2) for line in data.decode().splitlines()) if len(f) == 3}


def _up(address: tuple[str, int] | str) -> bool:
    try:
        return bool(_stats(address))
    except OSError:
        time.sleep(0.05)
        return False


@pytest.mark.parametrize("case", sorted(CASES))
def test_reader_agrees_with_a_real_memcached(tmp_path: Path, case: str) -> None:
    need_root("Debian's memcached wrapper")
    need_tool(WRAPPER, "memcached")
    port = free_port()
    # memcached drops to the memcache account (the package makes it) before creating its socket: a directory
    # that account owns
    sock_dir = Path(tempfile.mkdtemp(prefix="hostguard-mc-"))
    try:
        sock_dir.chmod(0o755)
        os.chown(sock_dir, pwd.getpwnam("memcache").pw_uid, -1)
        config = tmp_path / "memcached.conf"
        config.write_text(CASES[case].format(port=port, d=sock_dir))
        ours = parse(Host("/"), str(config))
        assert ours is not None
        address: tuple[str, int] | str = str(ours.unix_socket.value) if ours.unix_socket else ("127.0.0.1", port)
        with running([WRAPPER, str(config)], tmp_path / "log"):
            wait_for(lambda: _up(address), what="memcached")
            real = _stats(address)
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)
    assert real["inter"] == (",".join(s.value for s in ours.listen) if ours.listen else "NULL")
    assert real["tcpport"] == ours.port.value
    assert real["udpport"] == ours.udp_port.value
    assert real["domain_socket"] == (ours.unix_socket.value if ours.unix_socket else "NULL")
    assert real["auth_enabled_sasl"] == ("yes" if ours.sasl else "no")
    assert ours.auth.kind is AuthKind.NONE


def test_lines_of_the_values(tmp_path: Path) -> None:
    config = tmp_path / "memcached.conf"
    config.write_text(CASES["several_listen_lines"].format(port=11311, d=tmp_path))
    ours = parse(Host("/"), str(config))
    assert ours is not None
    w = str(config)
    assert ours.listen == (Setting("127.0.0.1", Where(w, 3)), Setting("127.0.0.2", Where(w, 4)),
                           Setting("127.0.0.3", Where(w, 4)))
    assert ours.udp_port == Setting("0", Where(w, 2))
    assert [i.label() for i in ours.listening.listens] == ["tcp 127.0.0.1:11311", "tcp 127.0.0.2:11311",
                                                           "tcp 127.0.0.3:11311"]
    assert ours.listening.scope is Scope.LOOPBACK


def test_no_listen_line_is_every_interface_and_a_hit(tmp_path: Path) -> None:
    ours = parse(tree(tmp_path, {CONFIG: "-m 64\n-p 11211\n-U 11211\n-u memcache\n"}))
    assert ours is not None
    assert ours.listening.scope is Scope.WILDCARD
    assert [i.label() for i in ours.listening.network] == ["tcp *:11211", "udp *:11211"]
    assert ours.auth.kind is AuthKind.NONE


def test_near_miss_with_sasl(tmp_path: Path) -> None:
    ours = parse(tree(tmp_path, {CONFIG: "-l 0.0.0.0\n-S\n"}))
    assert ours is not None and ours.listening.scope is Scope.WILDCARD
    assert ours.auth.kind is AuthKind.PASSWORD and ours.auth.where == (Where(CONFIG, 2),)


def test_debian_stock_config_through_live_host() -> None:
    need_tool("memcached")
    ours = parse(LiveHost())
    assert ours is not None
    assert ours.listen == (Setting("127.0.0.1", Where(CONFIG, line_of(CONFIG, "-l "))),)
    assert ours.port == Setting("11211", Where(CONFIG, line_of(CONFIG, "-p ")))
    assert ours.udp_port == Setting("0")
    assert ours.listening.scope is Scope.LOOPBACK
    assert ours.auth.kind is AuthKind.NONE


@pytest.mark.parametrize(("text", "message"), [
    ("-p\n", "memcached.conf:1: option -p requires an argument"),
    ("-p eleven\n", "memcached.conf:1: -p must be a port number 0-65535, not 'eleven'"),
    ("--listen\n", "memcached.conf:1: option --listen requires an argument"),
])
def test_malformed_config_is_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "memcached.conf"
    config.write_text(text)
    with pytest.raises(HostError) as err:
        parse(Host("/"), str(config))
    assert message in str(err.value) and "\n" not in str(err.value)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["-l", "-p", "-U", "-s", "-S", "--listen=", "#", "-d", "0.0.0.0", "11211", " "])
                | st.text(max_size=12), max_size=12).map(" ".join))
def test_garbage_gives_a_record_or_a_host_error(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    host = tree(tmp_path_factory.mktemp("mc"), {CONFIG: text.replace(" -", "\n-")})
    try:
        ours = parse(host)
    except HostError as exc:
        assert "\n" not in str(exc)
        return
    assert ours is not None and ours.listening.scope in Scope
