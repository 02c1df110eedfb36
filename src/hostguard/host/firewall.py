"""The firewall ruleset of a host, from every place rules can live.

Each place is one small :class:`RulesetSource`: it says whether it applies to the host (``present``) and
loads its rules (``load``). :func:`collect_live` and :func:`collect_static` are a list of sources and one
loop, :func:`_collect`, which merges what they load by each source's :class:`Merge` rule and is the one
place where a source's failure (:class:`RulesetSourceError`, or any other :class:`HostError`) becomes a
skip with reason ``error``: a firewall that could not be read must never look like no firewall.

Live: ``nft -j list ruleset`` (nftables, and iptables-nft: ufw, firewalld, Docker on Debian 12 all end up
there). Tables where nft shows iptables-nft rules only as opaque ``xt`` objects are read again from
``iptables-save``/``ip6tables-save``, which decode them; iptables-legacy rules, invisible to nft, come from
``iptables-legacy-save``. hostguard's own future ``table inet hostguard`` is read like any other table.

Under --root: the static configuration that would be loaded at boot — /etc/nftables.conf (when the
nftables service is enabled; loaded by the real ``nft`` into a private network namespace, so its syntax is
understood exactly, its includes resolved inside the tree and given to nft as copies),
/etc/iptables/rules.v4|v6, ufw (when enabled: ufw's own ufw-init loads sanitised
copies of the tree's rule files into a private namespace) and firewalld (its zone and service XML, see
host/firewalld.py). Nothing from the tree is ever executed or sourced.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum

from hostguard.engine.facts import Fact
from hostguard.findings import SkipReason
from hostguard.host.base import Host, HostError, Unavailable
from hostguard.host.identity import not_an_os_tree
from hostguard.host.netns import private_netns
from hostguard.host.sockets import LISTENERS, Listener
from hostguard.netfilter.iptables_save import IptablesSaveError, parse_save
from hostguard.netfilter.model import Chain, Ruleset
from hostguard.netfilter.nft_json import RulesetError, parse_ruleset
from hostguard.netfilter.reach import PortReach, reach_of

IPTABLES_TABLES = ("filter", "nat", "raw", "mangle", "security")


@dataclass(frozen=True)
class FirewallFacts:
    """The combined ruleset and where it came from."""

    ruleset: Ruleset
    sources: tuple[str, ...]
    live: bool
    notes: tuple[str, ...] = ()
    routes: tuple[tuple[str, str], ...] = ()  # (address, output interface) for DNAT targets
    files: tuple[tuple[str, str], ...] = ()  # (path, text) of the boot-time files a fix edits (FIX_FILES)


class RulesetSourceError(HostError):
    """A firewall source applies to the host but its rules cannot be read or understood.

    The message names the source and the cause; :func:`_collect` reports it as a skip with reason
    ``error``. Not being root or a missing tool are :class:`Unavailable` with their own reasons instead.
    """


class Merge(Enum):
    """How a source's tables join the tables loaded by the sources before it."""

    PLAIN = "plain"
    """Tables keep their names (nft's own tables; firewalld's single ``firewalld`` table)."""
    PREFIXED = "prefixed"
    """Tables are always renamed ``<prefix><table>``: another netfilter back end whose ``filter`` table is
    a different table from nft's ``filter`` (iptables-legacy)."""
    PREFIXED_AFTER_OTHERS = "prefixed_after_others"
    """Renamed only when earlier sources loaded chains: a tree normally uses one boot-time front end, whose
    tables keep their plain names; when several load, their same-named tables stay apart."""
    REPLACES_TABLES = "replaces_tables"
    """Each (family, table) it loads replaces the loaded chains of that table: a decoded re-reading of
    tables another source could only show in part (iptables-nft's ``xt`` rules)."""


class RulesetSource(ABC):
    """One place firewall rules live. Subclasses set ``name`` (shown in :attr:`FirewallFacts.sources`),
    and ``merge``/``prefix`` when their tables must not simply join the others."""

    name: str
    merge: Merge = Merge.PLAIN
    prefix: str = ""

    @abstractmethod
    def present(self, host: Host, loaded: Ruleset) -> bool:
        """Does this source apply to the host (tool installed, file there and its service enabled)?

        ``loaded`` is what the sources before it gave; only a source that refines another's rules (the
        iptables-nft decoder) looks at it.
        """

    @abstractmethod
    def load(self, host: Host) -> Ruleset:
        """The source's rules, its ``name`` in ``sources`` and any notes.

        A ruleset with empty ``sources`` means the source had nothing to add (its notes still count).
        Raises :class:`RulesetSourceError` (or :class:`HostError`) when the rules cannot be read or
        understood, :class:`Unavailable` when they cannot be known here (not root, tool missing).
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def _output(host: Host, argv: list[str]) -> str:
    """Standard output of a live command: :class:`Unavailable` (not_root) when refused for want of root,
    :class:`RulesetSourceError` when it fails otherwise, (tool_missing) when it is not installed."""
    result = host.run(argv)
    if result.returncode != 0:
        err = result.stderr.decode("utf-8", "replace").strip()
        if "Permission denied" in err or "Operation not permitted" in err:
            raise Unavailable(SkipReason.NOT_ROOT, f"`{' '.join(argv)}` needs root: {err.splitlines()[-1]}")
        last = err.splitlines()[-1] if err else f"exit {result.returncode}"
        raise RulesetSourceError(f"`{' '.join(argv)}` failed: {last}")
    return result.stdout.decode("utf-8", "surrogateescape")


def _service_enabled(host: Host, unit: str) -> bool:
    """True when a systemd ``*.wants`` directory of the tree pulls ``unit`` in at boot."""
    for base in ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"):
        for wants in host.listdir(base):
            if wants.endswith(".wants") and unit in host.listdir(f"{base}/{wants}"):
                return True
    return False


# -- live sources ----------------------------------------------------------------------------------


class LiveNftSource(RulesetSource):
    """The running nftables ruleset, including iptables-nft's tables (their ``xt`` rules stay opaque)."""

    name = "nft -j list ruleset"

    def present(self, host: Host, loaded: Ruleset) -> bool:
        """nft is installed."""
        return host.which("nft") is not None

    def load(self, host: Host) -> Ruleset:
        """``nft -j`` for the structure, ``nft -a`` for each rule's text as nft prints it."""
        data = _output(host, ["nft", "-j", "list", "ruleset"])
        listing = _output(host, ["nft", "-a", "list", "ruleset"])
        try:
            nft = parse_ruleset(data, listing)
        except RulesetError as exc:
            raise RulesetSourceError(str(exc)) from exc
        return Ruleset(nft.chains, nft.sets, (self.name,))


class IptablesNftDecodeSource(RulesetSource):
    """``iptables-save`` (or ``ip6tables-save``) re-reading the iptables-nft tables of one family, which
    decodes the ``xt`` rules nft can only show as opaque. Applies only when nft showed such rules."""

    merge = Merge.REPLACES_TABLES

    def __init__(self, family: str, tool: str) -> None:
        self.family = family
        self.name = tool

    def present(self, host: Host, loaded: Ruleset) -> bool:
        """nft showed a chain of this family holding iptables-nft (``xt``) rules."""
        return any(c.family == self.family and c.source == "iptables-nft" for c in loaded.chains.values())

    def load(self, host: Host) -> Ruleset:
        """The decoded tables; when they cannot be had, only notes (the nft view stays, opaque rules and all)."""
        opaque = f"iptables-nft rules in {self.family} tables stay opaque"
        if host.which(self.name) is None:
            return Ruleset({}, notes=(f"{self.name} is not installed", opaque))
        text = _output(host, [self.name])
        if not text.strip():
            return Ruleset({}, notes=(opaque,))
        try:
            decoded = parse_save(text, self.family, "iptables-nft")
        except IptablesSaveError as exc:
            return Ruleset({}, notes=(f"{self.name}: {exc}", opaque))
        return Ruleset(decoded.chains, {}, (self.name,))


class IptablesLegacySource(RulesetSource):
    """iptables-legacy's tables of one family: a separate back end nft cannot see."""

    merge = Merge.PREFIXED
    prefix = "legacy:"

    def __init__(self, family: str, tool: str) -> None:
        self.family = family
        self.name = tool

    def present(self, host: Host, loaded: Ruleset) -> bool:
        """The legacy save tool is installed (without it, there are no legacy rules)."""
        return host.which(self.name) is not None

    def load(self, host: Host) -> Ruleset:
        """The legacy rules; nothing (and no source listed) when no legacy table exists."""
        text = _output(host, [self.name])
        if not text.strip():
            return Ruleset({})
        try:
            legacy = parse_save(text, self.family, "iptables-legacy")
        except IptablesSaveError as exc:
            return Ruleset({}, notes=(f"{self.name}: {exc}",))
        return Ruleset(legacy.chains, {}, (self.name,)) if legacy.chains else Ruleset({})


LIVE_SOURCES: tuple[RulesetSource, ...] = (
    LiveNftSource(),
    IptablesNftDecodeSource("ip", "iptables-save"),
    IptablesNftDecodeSource("ip6", "ip6tables-save"),
    IptablesLegacySource("ip", "iptables-legacy-save"),
    IptablesLegacySource("ip6", "ip6tables-legacy-save"),
)


# -- boot-time sources (under --root) ---------------------------------------------------------------


INCLUDE_LINE = re.compile(r'^([ \t]*)include[ \t]+"([^"\n]*)"[ \t]*;?[ \t]*(?:#[^\n]*)?$', re.M)
MAX_INCLUDE_DEPTH = 16
MAX_INCLUDED_FILES = 512
NFT_INCLUDE_DIR = "/etc"        # nft's default include path for a relative name (``nft -h``)
NFT_SERVICE_CWD = "/"           # nftables.service runs ``nft -f`` from /: where "./x" and "../x" start


def _strip_strings_and_comments(text: str) -> str:
    """nft text without quoted strings and ``#`` comments, to spot an ``include`` we did not rewrite."""
    return re.sub(r'"[^"\n]*"|#[^\n]*', " ", text)


def _glob_in_tree(host: Host, pattern: str) -> list[str]:
    """Host files matching an absolute glob, every component resolved inside the tree, sorted like nft's."""
    return [p for p in host.glob(pattern) if not host.stat(p).is_dir]


class _Includes:
    """Copies of a tree's nft files with every ``include`` pointing at a copy: nft reads only these.

    The real ``nft`` would follow a symlink inside the tree (``/etc/nftables.d/x.nft -> /etc/secret``) out of
    it, onto this machine's files; here every include is resolved and read through the tree's
    :class:`Host` (links followed inside the root), globs expanded by us, and the copies written to a
    private directory.
    """

    def __init__(self, host: Host, workdir: str) -> None:
        self.host = host
        self.workdir = workdir
        self.names: dict[str, str] = {}  # copy -> tree path, to name the tree's file in nft's messages

    def copy(self, path: str, text: str, depth: int = 0) -> str:
        """Write ``text`` (the tree's ``path``) with its includes rewritten; return the copy's path."""
        if depth > MAX_INCLUDE_DEPTH:
            raise RulesetSourceError(f"{path}: includes nested deeper than {MAX_INCLUDE_DEPTH} (a loop?)")

        def rewrite(m: re.Match[str]) -> str:
            return "\n".join(f'{m.group(1)}include "{self.copy(target, self.host.read_text(target), depth + 1)}"'
                             for target in self._targets(path, m.group(2)))

        text = INCLUDE_LINE.sub(rewrite, text)
        if re.search(r"\binclude\b", _strip_strings_and_comments(INCLUDE_LINE.sub("", text))):
            raise RulesetSourceError(f"{path}: an include hostguard cannot resolve inside the tree "
                                     "(not alone on its line)")
        if len(self.names) >= MAX_INCLUDED_FILES:
            raise RulesetSourceError(f"{path}: more than {MAX_INCLUDED_FILES} included files")
        name = os.path.join(self.workdir, f"{len(self.names):04d}.nft")
        self.names[name] = path
        with open(name, "w", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write(text)
        return name

    def _targets(self, parent: str, target: str) -> list[str]:
        """Tree paths an ``include "target"`` names: absolute, "./"/"../" from nftables.service's working
        directory, other relative names from nft's default include directory; globs expanded."""
        if target.startswith("/"):
            absolute = target
        elif target.startswith(("./", "../")):
            absolute = posixpath.normpath(posixpath.join(NFT_SERVICE_CWD, target))
        else:
            absolute = posixpath.join(NFT_INCLUDE_DIR, target)
        if any(c in absolute for c in "*?["):
            return _glob_in_tree(self.host, absolute)
        if not self.host.exists(absolute):
            raise RulesetSourceError(f'{parent}: include "{target}": no such file in the tree')
        return [absolute]

    def message(self, text: str) -> str:
        """nft's message with the copies named as the tree's files."""
        for name, path in self.names.items():
            text = text.replace(name, path)
        return text


class NftablesConfSource(RulesetSource):
    """/etc/nftables.conf of the tree, when nftables.service is enabled, loaded by the real ``nft`` into a
    private network namespace so its syntax is understood exactly. Its includes (and theirs) are resolved
    inside the tree and handed to nft as copies (:class:`_Includes`): nft never opens a file of the tree,
    so a symlink in the tree cannot lead it to this machine's files."""

    name = "/etc/nftables.conf"

    def present(self, host: Host, loaded: Ruleset) -> bool:
        """The file exists and the service that loads it at boot is enabled."""
        return host.exists(self.name) and _service_enabled(host, "nftables.service")

    def load(self, host: Host) -> Ruleset:
        """What ``nft -f`` makes of the file in an empty namespace, read back with ``nft -j``."""
        path = self.name
        with private_netns("hgload", f"loading {path} into a private network namespace") as ns, \
                tempfile.TemporaryDirectory(prefix="hostguard-nft-") as workdir:
            includes = _Includes(host, workdir)
            main = includes.copy(path, host.read_text(path))
            result = ns.run(["nft", "-f", main])
            if result.returncode != 0:
                first = (result.stderr.strip().splitlines() or ["nft failed"])[0]
                raise RulesetSourceError(f"nft cannot load {path}: {includes.message(first)}")
            data = ns.check(["nft", "-j", "list", "ruleset"], "nft -j")
            listing = ns.check(["nft", "-a", "list", "ruleset"], "nft -a")
        try:
            loaded = parse_ruleset(data, listing, source=path)
        except RulesetError as exc:
            raise RulesetSourceError(f"{path}: {exc}") from exc
        return Ruleset(loaded.chains, loaded.sets, (self.name,))


class SavedIptablesSource(RulesetSource):
    """/etc/iptables/rules.v4 or rules.v6 of the tree (iptables-persistent restores them at boot)."""

    merge = Merge.PREFIXED_AFTER_OTHERS
    prefix = "saved:"

    def __init__(self, family: str, path: str) -> None:
        self.family = family
        self.name = path

    def present(self, host: Host, loaded: Ruleset) -> bool:
        """The file exists."""
        return host.exists(self.name)

    def load(self, host: Host) -> Ruleset:
        """The file parsed as ``iptables-save`` output."""
        try:
            saved = parse_save(host.read_text(self.name), self.family, self.name)
        except IptablesSaveError as exc:
            raise RulesetSourceError(f"{self.name}: {exc}") from exc
        return Ruleset(saved.chains, {}, (self.name,))


UFW_SETTINGS = {
    "IPV6": r"yes|no",
    "DEFAULT_INPUT_POLICY": r"ACCEPT|DROP|REJECT",
    "DEFAULT_OUTPUT_POLICY": r"ACCEPT|DROP|REJECT",
    "DEFAULT_FORWARD_POLICY": r"ACCEPT|DROP|REJECT",
    "MANAGE_BUILTINS": r"yes|no",
}
UFW_RULE_FILES = ("before.rules", "after.rules", "user.rules", "before6.rules", "after6.rules", "user6.rules")
UFW_INIT = "/lib/ufw/ufw-init"


def _ufw_defaults(text: str) -> str:
    """The tree's /etc/default/ufw reduced to known settings with plain values (it is shell: never sourced)."""
    values = {"IPV6": "yes", "DEFAULT_INPUT_POLICY": "DROP", "DEFAULT_OUTPUT_POLICY": "ACCEPT",
              "DEFAULT_FORWARD_POLICY": "DROP", "MANAGE_BUILTINS": "no"}
    for line in text.splitlines():
        m = re.match(r'^\s*([A-Z_]+)\s*=\s*"?([A-Za-z]+)"?\s*$', line)
        if m and m.group(1) in UFW_SETTINGS and re.fullmatch(UFW_SETTINGS[m.group(1)], m.group(2)):
            values[m.group(1)] = m.group(2)
    return "".join(f'{k}="{v}"\n' for k, v in values.items())


class UfwSource(RulesetSource):
    """ufw of the tree, when enabled: this machine's own ufw-init, fed sanitised copies of the tree's
    settings and rule files, run inside a private network namespace; the result read with iptables-save.
    Nothing from the tree is executed or sourced (before.init/after.init are noted, never run)."""

    name = "/etc/ufw (ufw)"
    merge = Merge.PREFIXED_AFTER_OTHERS
    prefix = "ufw:"

    def present(self, host: Host, loaded: Ruleset) -> bool:
        """ufw.conf says ``ENABLED=yes``."""
        ufw = host.read_optional("/etc/ufw/ufw.conf") or ""
        return re.search(r"^\s*ENABLED\s*=\s*yes", ufw, re.M) is not None

    def load(self, host: Host) -> Ruleset:
        """What ufw-init builds from the tree's rule files, plus a note when the tree has init scripts."""
        chains: dict[tuple[str, str, str], Chain] = {}
        with private_netns("hgufw", "evaluating ufw's configuration in a private network namespace") as ns:
            if not os.access(UFW_INIT, os.X_OK):
                raise Unavailable(SkipReason.TOOL_MISSING, "ufw is enabled in the tree; install ufw here to evaluate it")
            with tempfile.TemporaryDirectory(prefix="hostguard-ufw-") as data:
                self._write_datadir(host, data)
                result = ns.run([UFW_INIT, "--datadir", data, "start"])
                if result.returncode != 0:
                    first = (result.stderr.strip().splitlines() or ["ufw-init failed"])[0].replace(data, "")
                    raise RulesetSourceError(f"ufw cannot load /etc/ufw: {first}")
                for family, tool in (("ip", "iptables-save"), ("ip6", "ip6tables-save")):
                    text = ns.check([tool], tool)
                    try:
                        chains.update(parse_save(text, family, "ufw").chains)
                    except IptablesSaveError as exc:
                        raise RulesetSourceError(f"ufw's loaded rules: {exc}") from exc
        notes: tuple[str, ...] = ()
        if host.exists("/etc/ufw/before.init") or host.exists("/etc/ufw/after.init"):
            notes = ("ufw's before.init/after.init scripts were not run (never executed from a tree)",)
        return Ruleset(chains, {}, (self.name,), notes)

    @staticmethod
    def _write_datadir(host: Host, data: str) -> None:
        """ufw-init's ``--datadir``: settings reduced to known plain values, the rule files copied as data."""
        os.makedirs(f"{data}/etc/default")
        os.makedirs(f"{data}/etc/ufw")
        with open(f"{data}/etc/default/ufw", "w") as fh:
            fh.write(_ufw_defaults(host.read_optional("/etc/default/ufw") or "")
                     + f'IPT_SYSCTL="{data}/etc/ufw/sysctl.conf"\nIPT_MODULES=""\n')
        with open(f"{data}/etc/ufw/ufw.conf", "w") as fh:
            fh.write("ENABLED=yes\nLOGLEVEL=off\n")
        open(f"{data}/etc/ufw/sysctl.conf", "w").close()
        for name in UFW_RULE_FILES:
            text = host.read_optional(f"/etc/ufw/{name}")
            if text is None:
                raise RulesetSourceError(f"ufw is enabled but /etc/ufw/{name} is missing")
            with open(f"{data}/etc/ufw/{name}", "w", encoding="utf-8", errors="surrogateescape") as fh:
                fh.write(text)


class FirewalldSource(RulesetSource):
    """firewalld of the tree, when enabled: its zone and service XML as a ruleset (host/firewalld.py)."""

    name = "/etc/firewalld (firewalld)"

    def present(self, host: Host, loaded: Ruleset) -> bool:
        """firewalld.conf exists and firewalld.service is enabled."""
        return host.exists("/etc/firewalld/firewalld.conf") and _service_enabled(host, "firewalld.service")

    def load(self, host: Host) -> Ruleset:
        """The input path firewalld would build (imported here: only trees with firewalld need the XML code)."""
        from hostguard.host.firewalld import firewalld_ruleset

        return Ruleset(firewalld_ruleset(host).chains, {}, (self.name,))


STATIC_SOURCES: tuple[RulesetSource, ...] = (
    NftablesConfSource(),
    SavedIptablesSource("ip", "/etc/iptables/rules.v4"),
    SavedIptablesSource("ip6", "/etc/iptables/rules.v6"),
    UfwSource(),
    FirewalldSource(),
)


# -- combining -------------------------------------------------------------------------------------


def _merge(loaded: Ruleset, new: Ruleset, source: RulesetSource) -> Ruleset:
    """``loaded`` with ``new`` added by ``source``'s :class:`Merge` rule; sources and notes appended."""
    chains = dict(loaded.chains)
    if source.merge is Merge.REPLACES_TABLES:
        tables = {(family, table) for (family, table, _) in new.chains}
        chains = {k: c for k, c in chains.items() if (k[0], k[1]) not in tables}
    renamed = source.merge is Merge.PREFIXED or (source.merge is Merge.PREFIXED_AFTER_OTHERS and bool(chains))
    prefix = source.prefix if renamed else ""
    for (family, table, name), chain in new.chains.items():
        chains[(family, prefix + table, name)] = replace(chain, table=prefix + table)
    sets = dict(loaded.sets)
    for (family, table, name), elements in new.sets.items():
        sets[(family, prefix + table, name)] = elements
    return Ruleset(chains, sets, loaded.sources + new.sources, loaded.notes + new.notes)


def _collect(host: Host, sources: Sequence[RulesetSource]) -> Ruleset:
    """Every source that applies, loaded in order and merged.

    The one place a source's error becomes a skip: :class:`RulesetSourceError` and any other
    :class:`HostError` (an unreadable file of the tree) turn into :class:`Unavailable` (error) with the
    message. :class:`Unavailable` raised by a source passes through with its own reason.
    """
    loaded = Ruleset({})
    for source in sources:
        try:
            if source.present(host, loaded):
                loaded = _merge(loaded, source.load(host), source)
        except HostError as exc:
            raise Unavailable(SkipReason.ERROR, str(exc)) from exc
    return loaded


FIX_FILES = ("/etc/nftables.conf", "/etc/iptables/rules.v4", "/etc/iptables/rules.v6")


def _fix_files(host: Host) -> tuple[tuple[str, str], ...]:
    """The text of the boot-time firewall files that exist, so a fix can name the exact line it edits."""
    out = []
    for path in FIX_FILES:
        with contextlib.suppress(HostError):
            text = host.read_optional(path)
            if text is not None:
                out.append((path, text))
    return tuple(out)


def collect_live(host: Host) -> FirewallFacts:
    """Read the running ruleset of this network namespace."""
    ruleset = _collect(host, LIVE_SOURCES)
    if not ruleset.sources:
        raise Unavailable(SkipReason.TOOL_MISSING, "neither nft nor iptables-legacy-save is installed")
    targets = {r.target.rpartition(":")[0].strip("[]") for c in ruleset.chains.values() for r in c.rules
               if r.verdict == "dnat" and r.target and not r.target.startswith(":")}
    routes = tuple((a, oif) for a in sorted(targets) if a and (oif := route_oif(host, a)))
    return FirewallFacts(ruleset, ruleset.sources, True, ruleset.notes, routes, _fix_files(host))


def collect_static(host: Host) -> FirewallFacts:
    """The ruleset a tree would load at boot. A tree with no firewall configuration that is no OS either (an
    empty directory, a source checkout) has no boot-time firewall to judge: "not looked", never "no
    firewall"."""
    ruleset = _collect(host, STATIC_SOURCES)
    why = None if ruleset.sources else not_an_os_tree(host, "boot-time firewall")
    if why is not None:
        raise Unavailable(SkipReason.UNSUPPORTED, why)
    if not ruleset.sources:
        ruleset = replace(ruleset, notes=(*ruleset.notes, "no firewall configuration is loaded at boot"))
    return FirewallFacts(ruleset, ruleset.sources, False, ruleset.notes, (), _fix_files(host))


def collect_firewall(host: Host) -> FirewallFacts:
    """The live ruleset, or the tree's boot-time configuration under --root."""
    return collect_live(host) if host.live else collect_static(host)


def route_oif(host: Host, address: str) -> str | None:
    """The interface the live host would send ``address`` out of (for DNAT targets)."""
    try:
        result = host.run(["ip", "-o", "route", "get", address])
    except Unavailable:
        return None
    m = re.search(r"\bdev (\S+)", result.stdout.decode("utf-8", "replace"))
    return m.group(1) if m else None


FIREWALL: Fact[FirewallFacts] = Fact("firewall", collect_firewall)


def collect_reach(host: Host, firewall: FirewallFacts, listeners: tuple[Listener, ...]) -> tuple[PortReach, ...]:
    """Every non-loopback listener and every DNAT-published port, evaluated once against the ruleset."""
    return reach_of(firewall.ruleset, dict(firewall.routes), listeners)


REACH: Fact[tuple[PortReach, ...]] = Fact("reach", collect_reach, inputs=(FIREWALL, LISTENERS))
