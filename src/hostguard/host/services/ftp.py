"""FTP servers as their configuration makes them at boot: anonymous login, chroot, and passwords in clear.

**vsftpd** (``/etc/vsftpd.conf``) is read the way ``parseconf.c`` reads it, which the tests prove with a real
vsftpd on loopback: ``name=value`` lines with no spaces around ``=`` (a known name with spaces is the server's
own start-up error), ``#`` comment lines, booleans ``YES/TRUE/1`` and ``NO/FALSE/0`` in any case, the compiled
defaults for the rest (``anonymous_enable`` is YES unless the file says NO). ``listen=YES`` binds
``listen_address`` (every IPv4 address by default), ``listen_ipv6=YES`` binds ``listen_address6`` (``::``,
dual stack); neither: vsftpd runs from inetd or a systemd socket, which the file does not describe.

**proftpd** (``/etc/proftpd/proftpd.conf``) is a directive file like Apache's: ``Include`` (globs) read in
place, ``<Section>`` blocks, ``\\`` continuations, names case-insensitive. ``<IfModule>`` blocks are taken as
applying (Debian loads mod_tls and the modules its configuration wraps). An ``<Anonymous>`` block allows
anonymous login unless a ``<Limit LOGIN>`` inside it denies all; ``TLSEngine on`` with ``TLSRequired``
``on``/``ctrl``/``auth``/``auth+data``/``both`` keeps passwords off the wire in clear.

Anonymous login is :attr:`AuthKind.NONE`; local users logging in without TLS are :attr:`AuthKind.WEAK` (the
password crosses the network in clear).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hostguard.engine.facts import Fact
from hostguard.host.base import Host, HostError
from hostguard.host.services.common import (
    DEFAULT,
    MAX_INCLUDE_DEPTH,
    Auth,
    AuthKind,
    Listen,
    Listening,
    Scope,
    Setting,
    as_bool,
    as_port,
    classify,
    defaults,
    dirname,
    join,
    one_line,
    read_config,
)
from hostguard.host.web.model import Where

VSFTPD_CONFIG = "/etc/vsftpd.conf"
PROFTPD_CONFIG = "/etc/proftpd/proftpd.conf"
VSF_BOOL = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}
PRO_BOOL = {"on": True, "yes": True, "true": True, "off": False, "no": False, "false": False}
VSF_BOOLS = ("anonymous_enable", "anon_upload_enable", "anon_mkdir_write_enable", "write_enable", "local_enable",
             "chroot_local_user", "ssl_enable", "force_local_logins_ssl", "listen", "listen_ipv6", "allow_anon_ssl",
             "guest_enable")
# pam_service_name, guest_username and user_config_dir say where virtual users' passwords are kept and whom
# they act as (host/services/ftp_users.py reads them; absent from the file: the compiled default applies)
VSF_STRINGS = ("listen_address", "listen_address6", "listen_port", "anon_root", "ftp_username", "pam_service_name",
               "guest_username", "user_config_dir")


@dataclass(frozen=True)
class FtpConfig:
    """One FTP server's effective answers: anonymous login, uploads, chroot, TLS, where it listens."""

    server: str                      # "vsftpd" or "proftpd"
    config: str
    files: tuple[str, ...]
    anonymous: Setting               # "yes"/"no"
    anonymous_upload: Setting        # "yes"/"no": anonymous users may write
    local_users: Setting             # "yes"/"no": system accounts log in
    chroot_local: Setting            # "yes"/"no": local users locked in their home (vsftpd chroot_local_user,
                                     # proftpd DefaultRoot)
    tls_required: Setting            # "yes"/"no": logins need TLS first
    listening: Listening
    auth: Auth
    settings: tuple[tuple[str, Setting], ...] = ()
    notes: tuple[str, ...] = ()
    # proftpd: every AuthUserFile, in any context (<VirtualHost> included), in file order; virtual users'
    # passwords live there (host/services/ftp_users.py reads them)
    auth_user_files: tuple[Setting, ...] = ()


def _yn(flag: bool) -> str:
    return "yes" if flag else "no"


def _ftp_auth(anonymous: Setting, local: Setting, tls: Setting) -> Auth:
    if anonymous.value == "yes":
        return Auth(AuthKind.NONE, "anonymous login is allowed", (anonymous.where,))
    if local.value == "yes" and tls.value != "yes":
        return Auth(AuthKind.WEAK, "local users log in without TLS: passwords cross the network in clear",
                    (local.where, tls.where))
    if local.value == "yes":
        return Auth(AuthKind.PASSWORD, "local users log in over TLS", (local.where, tls.where))
    return Auth(AuthKind.REFUSED, "neither anonymous nor local logins are enabled", (anonymous.where, local.where))


# -- vsftpd ----------------------------------------------------------------------------------------------

def parse_vsftpd(host: Host, path: str = VSFTPD_CONFIG) -> FtpConfig | None:
    """vsftpd's effective settings from ``path``; None when vsftpd is not installed (no file)."""
    text = read_config(host, path)
    if text is None:
        return None
    built = defaults("vsftpd")
    values: dict[str, Setting] = {k: Setting(_yn(VSF_BOOL[v.lower()]) if k in VSF_BOOLS else v)
                                  for k, v in built.items()}
    for number, raw in enumerate(text.splitlines(), 1):
        where = Where(path, number)
        if not raw.strip() or raw.startswith("#"):
            continue
        name, eq, value = raw.partition("=")
        if name.strip() in VSF_BOOLS + VSF_STRINGS and (name != name.strip() or not eq):
            raise HostError(f"{where}: vsftpd reads {one_line(raw)!r} as an unrecognised variable "
                            "(write name=value with no spaces)")
        if name in VSF_BOOLS:
            if value != value.strip():
                raise HostError(f"{where}: bad bool value {one_line(value)!r} for {name} (vsftpd refuses to start)")
            values[name] = Setting(_yn(as_bool(value, VSF_BOOL, where, name)), where)
        elif name in VSF_STRINGS:
            values[name] = Setting(value, where)
    listen, listen6 = values["listen"], values["listen_ipv6"]
    port = values["listen_port"]
    port_no = as_port(port.value, port.where, "listen_port")
    listens: list[Listen] = []
    notes: list[str] = []
    if listen.value == "yes" and listen6.value == "yes":
        raise HostError(f"{listen6.where}: listen and listen_ipv6 cannot both be YES (vsftpd refuses to start)")
    if listen.value == "yes":
        addr = values.get("listen_address") or Setting("")
        shown = addr.value or "0.0.0.0"
        listens.append(Listen(shown, port_no, classify(shown), addr.where if addr.value else listen.where))
    elif listen6.value == "yes":
        addr = values.get("listen_address6") or Setting("")
        shown = addr.value or "::"
        listens.append(Listen(shown, port_no, classify(shown), addr.where if addr.value else listen6.where))
    else:
        note = "listen and listen_ipv6 are NO: vsftpd runs from inetd or a systemd socket, which says where it listens"
        notes.append(note)
        listens.append(Listen("?", port_no, Scope.UNKNOWN, listen.where))
    anonymous = values["anonymous_enable"]
    upload = values["anon_upload_enable"]
    write = values["write_enable"]
    anon_write = Setting(_yn(anonymous.value == "yes" and write.value == "yes" and upload.value == "yes"),
                         upload.where if upload.value != "yes" else write.where)
    ssl, force = values["ssl_enable"], values["force_local_logins_ssl"]
    tls = Setting(_yn(ssl.value == "yes" and force.value == "yes"), ssl.where if ssl.value != "yes" else force.where)
    settings = tuple(sorted((k, v) for k, v in values.items()))
    return FtpConfig("vsftpd", path, (path,), anonymous, anon_write, values["local_enable"],
                     values["chroot_local_user"], tls, Listening(tuple(listens), tuple(notes)),
                     _ftp_auth(anonymous, values["local_enable"], tls), settings, tuple(notes))


# -- proftpd ---------------------------------------------------------------------------------------------

@dataclass
class _Pro:
    top: dict[str, Setting] = field(default_factory=dict)
    anonymous: list[tuple[Where, bool]] = field(default_factory=list)   # (the <Anonymous> line, login denied)
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    user_files: list[Setting] = field(default_factory=list)   # every AuthUserFile, wherever it is


_TOP = ("port", "defaultaddress", "socketbindtight", "useipv6", "servertype", "defaultroot", "tlsengine",
        "tlsrequired", "authorder")


def _pro_lines(host: Host, path: str, text: str, out: _Pro, depth: int) -> list[tuple[str, list[str], Where]]:
    """Directive lines of ``path`` with includes expanded in place."""
    if depth > MAX_INCLUDE_DEPTH:
        raise HostError(f"{path}: Include nested deeper than {MAX_INCLUDE_DEPTH} (a loop?)")
    out.files.append(path)
    result: list[tuple[str, list[str], Where]] = []
    raw_lines = text.splitlines()
    i = 0
    while i < len(raw_lines):
        first = i + 1
        line = raw_lines[i]
        while line.rstrip().endswith("\\") and i + 1 < len(raw_lines):
            i += 1
            line = line.rstrip()[:-1] + " " + raw_lines[i]
        i += 1
        where = Where(path, first)
        words = _pro_split(line.strip(), where)
        if not words:
            continue
        if words[0].lower() == "include":
            if len(words) != 2:
                raise HostError(f"{where}: Include takes one path")
            pattern = join(dirname(path), words[1])
            matches = host.glob(pattern) if any(c in pattern for c in "*?[") else [pattern]
            if not matches:
                out.notes.append(f"{where}: Include {words[1]} matches no file")
            for name in matches:
                sub = host.read_optional(name)
                if sub is None:
                    raise HostError(f"{where}: included file {name} does not exist")
                result += _pro_lines(host, name, sub, out, depth + 1)
            continue
        result.append((words[0], words[1:], where))
    return result


def _pro_split(line: str, where: Where) -> list[str]:
    if not line or line.startswith("#"):
        return []
    words: list[str] = []
    cur: list[str] = []
    quote = False
    started = False
    for c in line:
        if c == '"':
            quote = not quote
            started = True
        elif c in " \t" and not quote:
            if started:
                words.append("".join(cur))
                cur, started = [], False
        else:
            cur.append(c)
            started = True
    if quote:
        raise HostError(f"{where}: unterminated quote")
    if started:
        words.append("".join(cur))
    return words


def parse_proftpd(host: Host, path: str = PROFTPD_CONFIG) -> FtpConfig | None:
    """proftpd's effective settings from ``path``; None when proftpd is not installed (no file)."""
    text = read_config(host, path)
    if text is None:
        return None
    out = _Pro()
    stack: list[tuple[str, Where]] = []
    anon: tuple[Where, bool] | None = None
    limit_login = False
    for name, args, where in _pro_lines(host, path, text, out, 0):
        low = name.lower()
        if low.startswith("</"):
            section = low[2:].rstrip(">")
            if not stack or stack[-1][0] != section:
                raise HostError(f"{where}: {name} closes a section that is not open")
            stack.pop()
            if section == "anonymous" and anon is not None:
                out.anonymous.append(anon)
                anon = None
            if section == "limit":
                limit_login = False
            continue
        if low.startswith("<"):
            section = low[1:].rstrip(">")
            stack.append((section, where))
            if section == "anonymous":
                anon = (where, False)
            elif section == "limit":
                limit_login = any(a.rstrip(">").lower() == "login" for a in args)
            continue
        sections = [s for s, _ in stack if s not in ("ifmodule", "global", "ifdefine")]
        if low == "authuserfile" and anon is None:
            out.user_files.append(Setting(" ".join(args), where))
        if anon is not None and limit_login and low == "denyall":
            anon = (anon[0], True)
        elif not sections and low in _TOP:
            out.top[low] = Setting(" ".join(args), where)
    if stack:
        raise HostError(f"{stack[-1][1]}: <{stack[-1][0]}> is never closed")
    built = defaults("proftpd")
    top = out.top
    port = top.get("port", Setting(built["port"]))
    port_no = as_port(port.value, port.where, "Port")
    notes = list(out.notes)
    listens: list[Listen] = []
    servertype = top.get("servertype")
    if servertype is not None and servertype.value.lower() == "inetd":
        notes.append(f"{servertype.where}: ServerType inetd: inetd or a systemd socket says where it listens")
        listens.append(Listen("?", port_no, Scope.UNKNOWN, servertype.where))
    elif port_no:
        tight = top.get("socketbindtight")
        if tight is not None and as_bool(tight.value, PRO_BOOL, tight.where, "SocketBindTight"):
            addr = top.get("defaultaddress")
            if addr is None:
                listens.append(Listen("?", port_no, Scope.UNKNOWN, tight.where))
                notes.append(f"{tight.where}: SocketBindTight on binds the host name's address, not known here")
            else:
                for a in addr.value.split():
                    listens.append(Listen(a, port_no, classify(a), addr.where))
        else:
            v6 = top.get("useipv6")
            wildcard = "::" if v6 is None or as_bool(v6.value, PRO_BOOL, v6.where, "UseIPv6") else "0.0.0.0"
            listens.append(Listen(wildcard, port_no, Scope.WILDCARD, port.where))
    open_anon = [a for a in out.anonymous if not a[1]]
    anonymous = Setting("yes", open_anon[0][0]) if open_anon else Setting("no", out.anonymous[0][0]
                                                                         if out.anonymous else DEFAULT)
    root = top.get("defaultroot")
    chroot = Setting("yes" if root is not None and root.value.split()[:1] != ["/"] else "no",
                     root.where if root else DEFAULT)
    engine, required = top.get("tlsengine"), top.get("tlsrequired")
    engine_on = engine is not None and as_bool(engine.value, PRO_BOOL, engine.where, "TLSEngine")
    req_on = required is not None and required.value.lower() in ("on", "ctrl", "auth", "auth+data", "both",
                                                                 "auth+ctrl", "ctrl+data")
    tls = Setting(_yn(engine_on and req_on), (required.where if required else engine.where if engine else DEFAULT))
    local = Setting("yes")      # proftpd lets system accounts in unless told otherwise (not modelled further)
    return FtpConfig("proftpd", path, tuple(out.files), anonymous, Setting("no"), local, chroot, tls,
                     Listening(tuple(listens), tuple(notes)), _ftp_auth(anonymous, local, tls),
                     tuple(sorted(top.items())), tuple(notes), tuple(out.user_files))


def collect_ftp(host: Host) -> tuple[FtpConfig, ...]:
    """The FTP servers configured on the host (vsftpd, proftpd; empty when neither is installed)."""
    return tuple(c for c in (parse_vsftpd(host), parse_proftpd(host)) if c is not None)


FTP: Fact[tuple[FtpConfig, ...]] = Fact("ftp_config", collect_ftp)
