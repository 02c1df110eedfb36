"""Memcached as Debian starts it: ``/etc/memcached.conf`` turned into command-line options.

Debian's ``systemd-memcached-wrapper`` (and ``start-memcached``) read the file line by line: text from an
unescaped ``#`` on is a comment, lines not starting with ``-`` are dropped, ``-d``/``-h`` lines are ignored,
and the rest is joined into memcached's argument list. The options are then read as memcached's
``getopt_long`` reads them (the tests prove it with ``stats settings`` of a real memcached):

* ``-l``/``--listen`` addresses (comma lists; several ``-l`` add up), none: every interface;
* ``-p`` TCP port (0: no TCP), ``-U`` UDP port (0, the default since 1.5.6: no UDP);
* ``-s`` a unix socket, which switches the network off;
* ``-S`` SASL: without it memcached has no authentication at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hostguard.engine.facts import Fact
from hostguard.host.base import Host, HostError
from hostguard.host.services.common import (
    Auth,
    AuthKind,
    Listen,
    Listening,
    Scope,
    Setting,
    as_port,
    classify,
    defaults,
    one_line,
    read_config,
)
from hostguard.host.web.model import Where

CONFIG = "/etc/memcached.conf"
# Short options that take an argument (memcached 1.6.18's getopt string
# "a:AZp:s:U:m:Mc:khiVrvdl:u:P:f:n:t:D:LR:Cb:B:I:SFXWY:e:o:N:"), and the long names the checks read.
WITH_ARG = frozenset("apsUmclufPntDRbBIYeoN")
LONG = {"listen": "l", "port": "p", "udp-port": "U", "unix-socket": "s", "enable-sasl": "S",
        "unix-mask": "a", "user": "u", "memory-limit": "m", "conn-limit": "c", "threads": "t",
        "pidfile": "P", "extended": "o", "enable-ssl": "Z"}
_NO_ARG_LONG = {"enable-sasl", "enable-ssl"}


@dataclass(frozen=True)
class MemcachedConfig:
    """The options memcached is started with, and what they mean for reach and authentication."""

    config: str
    argv: tuple[tuple[str, Where], ...]      # the arguments as the wrapper passes them, each with its line
    listen: tuple[Setting, ...]              # one per address; empty: every interface
    port: Setting
    udp_port: Setting
    unix_socket: Setting | None
    sasl: Setting | None
    listening: Listening
    auth: Auth
    notes: tuple[str, ...] = ()


def wrapper_args(text: str, path: str) -> list[tuple[str, Where]]:
    """The argument words Debian's wrapper builds from the file, each with the line it came from."""
    out: list[tuple[str, Where]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(?<!\\)#[^#]*", "", raw).strip()
        if not line or not line.startswith("-") or re.match(r"-[dh]", line):
            continue
        out += [(word, Where(path, number)) for word in line.split()]
    return out


def parse(host: Host, path: str = CONFIG) -> MemcachedConfig | None:
    """The effective options from ``path``; None when memcached is not installed (no file)."""
    text = read_config(host, path)
    if text is None:
        return None
    argv = wrapper_args(text, path)
    opts: list[tuple[str, str, Where]] = []
    i = 0
    while i < len(argv):
        word, where = argv[i]
        i += 1
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            if name not in LONG:
                continue
            letter = LONG[name]
            if name in _NO_ARG_LONG:
                opts.append((letter, "", where))
                continue
            if not eq:
                if i >= len(argv):
                    raise HostError(f"{where}: option --{name} requires an argument")
                value = argv[i][0]
                i += 1
            opts.append((letter, value, where))
            continue
        j = 1
        while j < len(word):
            letter = word[j]
            if letter in WITH_ARG:
                value = word[j + 1:]
                if not value:
                    if i >= len(argv):
                        raise HostError(f"{where}: option -{letter} requires an argument")
                    value = argv[i][0]
                    i += 1
                opts.append((letter, value, where))
                break
            opts.append((letter, "", where))
            j += 1
    built = defaults("memcached")
    listen: list[Setting] = []
    port = Setting(built["port"])
    udp = Setting(built["udp-port"])
    unix: Setting | None = None
    sasl: Setting | None = None
    for letter, value, where in opts:
        if letter == "l":
            listen += [Setting(a.strip(), where) for a in value.split(",") if a.strip()]
        elif letter == "p":
            port = Setting(value, where)
        elif letter == "U":
            udp = Setting(value, where)
        elif letter == "s":
            unix = Setting(value, where)
        elif letter == "S":
            sasl = Setting("yes", where)
    port_no = as_port(port.value, port.where, "-p")
    udp_no = as_port(udp.value, udp.where, "-U")
    listens: list[Listen] = []
    if unix is not None:
        if not unix.value:
            raise HostError(f"{unix.where}: -s needs a socket path, not {one_line(unix.value)!r}")
        listens.append(Listen(unix.value, None, Scope.NONE, unix.where, "unix"))
    else:
        addresses = listen or [Setting(built["listen"])]
        for proto, number, line in (("tcp", port_no, port.where), ("udp", udp_no, udp.where)):
            if number:
                for a in addresses:
                    address = a.value.rsplit(":", 1)[0] if a.value.count(":") == 1 else a.value
                    listens.append(Listen(address, number, classify(address), a.where if listen else line, proto))
    if sasl is not None:
        auth = Auth(AuthKind.PASSWORD, "SASL authentication (-S) is on", (sasl.where,))
    else:
        auth = Auth(AuthKind.NONE, "memcached has no authentication without -S (SASL)",
                    (Where(path),))
    return MemcachedConfig(path, tuple(argv), tuple(listen), port, udp, unix, sasl, Listening(tuple(listens)), auth)


def collect_memcached(host: Host) -> MemcachedConfig | None:
    """The memcached options of the host (None when memcached is not installed)."""
    return parse(host)


MEMCACHED: Fact[MemcachedConfig | None] = Fact("memcached_config", collect_memcached)
