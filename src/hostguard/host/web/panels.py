"""Control panels on ports of their own (Webmin, Cockpit, BT/aaPanel, Jenkins): where they listen and who the
firewall lets reach them.

Live: a listening socket on a panel's port held by one of its programs (a plain program on 8888 is not
aaPanel). Under ``--root``: the panel installed (its files), listening where its own configuration says
(Webmin's ``miniserv.conf``, Cockpit's socket unit and drop-ins), else on its default ports everywhere.
The panels are data (``data/web/admin_paths.toml`` ``[[panel]]``).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from functools import cache

from hostguard.config import build_section
from hostguard.data import load_toml
from hostguard.engine.facts import Fact
from hostguard.host.base import Host, HostError
from hostguard.host.exposure import Exposure, bound, exposure_of_sockets
from hostguard.host.firewall import FIREWALL, FirewallFacts
from hostguard.host.processes import Interpreter, program_of
from hostguard.host.sockets import LISTENERS, Listener


@cache
def interpreters() -> tuple[Interpreter, ...]:
    """The interpreters whose script names the program (data/ports/services.toml), for ``python3 cockpit-ws``."""
    data = load_toml("ports/services.toml")
    return tuple(build_section(Interpreter, e, f"services.toml interpreter {i}")
                 for i, e in enumerate(data["interpreter"], 1))


@dataclass(frozen=True)
class Panel:
    """A control panel of data/web/admin_paths.toml's ``[[panel]]`` list."""

    name: str
    ports: tuple[int, ...]
    programs: tuple[str, ...]
    files: tuple[str, ...]
    why: str
    fix: str
    activated_by: tuple[str, ...] = ()
    reader: str = ""
    config: str = ""
    unit: str = ""


@cache
def panels() -> tuple[Panel, ...]:
    """The ``[[panel]]`` entries, read once."""
    return tuple(Panel(p["name"], tuple(int(x) for x in p["ports"]), tuple(p["programs"]), tuple(p["files"]),
                       p["why"], p["fix"], tuple(p.get("activated_by", ())), p.get("reader", ""),
                       p.get("config", ""), p.get("unit", ""))
                 for p in load_toml("web/admin_paths.toml")["panel"])


@dataclass(frozen=True)
class PanelSocket:
    """Where one panel listens (a live socket, or what its installed configuration says) and who the
    firewall lets reach it."""

    panel: Panel
    proto: str
    address: str
    port: int
    exposure: Exposure
    seen: str                      # "listening" (a live socket) or "installed" (files, under --root)
    where: str                     # the program holding the socket, or the line/file saying where it listens
    files: tuple[str, ...] = ()
    allow: str = ""                # the panel's own address allow-list (Webmin's ``allow=``), with its line

    def label(self) -> str:
        """``tcp 0.0.0.0:10000``."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.proto} {host}:{self.port}"


@dataclass(frozen=True)
class PanelFacts:
    """Every panel socket found, and what could not be told (a listener line systemd would ignore)."""

    sockets: tuple[PanelSocket, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Miniserv:
    """What Webmin's miniserv.conf says about where it listens: ``port=``, ``bind=``, ``ipv6=``, ``allow=``,
    each with its 1-based line (0: not written, the built-in default)."""

    port: int = 10000
    port_line: int = 0
    binds: tuple[str, ...] = ()
    bind_line: int = 0
    ipv6: bool = False
    allow: str = ""
    allow_line: int = 0


def parse_miniserv(text: str, path: str) -> Miniserv:
    """miniserv.conf read as Webmin reads it (one ``name=value`` a line, split at the first ``=``, the last
    value winning, other lines ignored). A port that is not a number is a :class:`HostError` naming the line
    (miniserv would not start)."""
    values: dict[str, tuple[str, int]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        name, eq, value = line.partition("=")
        if eq and name:
            values[name] = (value.strip(), number)
    out = Miniserv()
    if "port" in values:
        port, at = values["port"]
        if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
            raise HostError(f"{path}:{at}: port= must be a port number 1-65535, not {port[:40]!r}")
        out = replace(out, port=int(port), port_line=at)
    if "bind" in values:
        out = replace(out, binds=tuple(values["bind"][0].split()), bind_line=values["bind"][1])
    if "ipv6" in values:
        out = replace(out, ipv6=values["ipv6"][0] == "1")
    if values.get("allow", ("", 0))[0]:
        out = replace(out, allow=values["allow"][0], allow_line=values["allow"][1])
    return out


def parse_listen_streams(units: list[tuple[str, str]]) -> tuple[list[tuple[str, int, str]], list[str]]:
    """The TCP sockets a systemd socket unit listens on, from its unit file and drop-ins in the order systemd
    reads them: ``ListenStream=`` lines in ``[Socket]``, an empty one resetting the list. Returns (address,
    port, path:line) for network sockets and notes for values systemd would ignore (it carries on)."""
    out: list[tuple[str, int, str]] = []
    notes: list[str] = []
    for path, text in units:
        section = ""
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            name, eq, value = line.partition("=")
            if section != "Socket" or not eq or name.strip() != "ListenStream":
                continue
            value = value.strip()
            where = f"{path}:{number}"
            if not value:
                out = []
                continue
            if value.startswith(("/", "@")):
                continue                                  # a unix socket: no network client reaches it
            address, _, port = value.rpartition(":") if not value.isdigit() else ("", "", value)
            address = address.strip("[]") or "*"
            if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
                notes.append(f"{where}: ListenStream={value[:60]} is not a port or address:port (systemd ignores it)")
                continue
            out.append((address, int(port), where))
    return out, notes


def _program_names(x: Listener) -> tuple[str, ...]:
    """Every name the listener's program goes by: process name, argv[0], executable, the script it runs."""
    program = program_of(x.process, x.exe, x.cmdline, interpreters())
    names = [*program.names, posixpath.basename(program.exe or ""), posixpath.basename(program.script or "")]
    return tuple(n for n in dict.fromkeys(names) if n)


def _panel_files(host: Host, panel: Panel) -> tuple[str, ...]:
    return tuple(f for f in panel.files if host.exists(f))


def _live_panels(host: Host, listeners: tuple[Listener, ...], firewall: FirewallFacts | None) -> list[PanelSocket]:
    out = []
    for x in listeners:
        for panel in panels():
            if x.port not in panel.ports or x.loopback_only:
                continue
            names = _program_names(x)
            held = any(fnmatchcase(n, g) for n in names for g in panel.programs)
            installed = _panel_files(host, panel)
            if not held and not (installed and any(n in panel.activated_by for n in names)):
                continue
            holder = (x.process or "?") + (f" (pid {x.pid})" if x.pid else "")
            out.append(PanelSocket(panel, x.proto, x.address, x.port, exposure_of_sockets(firewall, [x]),
                                   "listening", holder, installed))
    return out


def _configured(host: Host, panel: Panel, installed: tuple[str, ...]) -> tuple[list[tuple[str, int, str]], str, list[str]]:
    """(address, port, where) the installed panel listens on, its own allow-list, and notes."""
    if panel.reader == "miniserv":
        conf = parse_miniserv(host.read_text(panel.config), panel.config)
        where = f"{panel.config}:{conf.bind_line}" if conf.bind_line else f"{panel.config} (no bind=: every address)"
        binds = conf.binds or (("*",) if conf.ipv6 else ("0.0.0.0",))
        allow = f"allow={conf.allow} ({panel.config}:{conf.allow_line})" if conf.allow else ""
        return [(b, conf.port, where) for b in binds], allow, []
    if panel.reader == "socket_unit":
        units = []
        vendor = [f"{d}/{panel.unit}" for d in ("/usr/lib/systemd/system", "/lib/systemd/system")]
        main = next((p for p in (f"/etc/systemd/system/{panel.unit}", *vendor) if host.exists(p)), "")
        if main:
            units.append((main, host.read_text(main)))
        drop_ins: dict[str, str] = {}
        for d in ("/usr/lib/systemd/system", "/lib/systemd/system", "/run/systemd/system", "/etc/systemd/system"):
            for name in host.listdir(f"{d}/{panel.unit}.d"):
                if name.endswith(".conf"):
                    drop_ins[name] = f"{d}/{panel.unit}.d/{name}"  # a later directory's file of that name wins
        units += [(drop_ins[n], host.read_text(drop_ins[n])) for n in sorted(drop_ins)]
        listens, notes = parse_listen_streams(units)
        return listens, "", notes
    return [("*", port, f"{installed[0]} (installed; listens on port {port} by default)") for port in panel.ports], "", []


def collect_panels(host: Host, listeners: tuple[Listener, ...] | None, firewall: FirewallFacts | None) -> PanelFacts:
    """Control panels: live, the sockets on a panel's port held by its program; where the sockets cannot be
    listed (``--root``), the installed panels and where their configuration makes them listen. Each with the
    firewall's answer (the live ruleset, or the boot-time one under ``--root``)."""
    if listeners is not None:
        return PanelFacts(tuple(_live_panels(host, listeners, firewall)))
    out: list[PanelSocket] = []
    notes: list[str] = []
    for panel in panels():
        installed = _panel_files(host, panel)
        if not installed:
            continue
        listens, allow, more = _configured(host, panel, installed)
        notes += more
        for address, port, where in listens:
            socket, note = bound("tcp", address, port)
            if socket.loopback_only:
                continue
            out.append(PanelSocket(panel, "tcp", address, port,
                                   exposure_of_sockets(firewall, [socket], notes=[note] if note else []),
                                   "installed", where, installed, allow))
    return PanelFacts(tuple(out), tuple(notes))


PANELS: Fact[PanelFacts] = Fact("web_panels", collect_panels, inputs=(LISTENERS.best_effort, FIREWALL.best_effort))
