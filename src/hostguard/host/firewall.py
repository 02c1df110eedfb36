"""The firewall ruleset of a host, from every place rules can live.

Live: ``nft -j list ruleset`` (nftables, and iptables-nft: ufw, firewalld, Docker on Debian 12 all end up
there). Tables where nft shows iptables-nft rules only as opaque ``xt`` objects are read again from
``iptables-save``/``ip6tables-save``, which decode them; iptables-legacy rules, invisible to nft, come from
``iptables-legacy-save``. hostguard's own future ``table inet hostguard`` is read like any other table.

Under --root: the static configuration that would be loaded at boot — /etc/nftables.conf (when the
nftables service is enabled; loaded by the real ``nft`` into a private network namespace, so its syntax is
understood exactly), /etc/iptables/rules.v4|v6, ufw (when enabled: ufw's own ufw-init loads sanitised
copies of the tree's rule files into a private namespace) and firewalld (its zone and service XML, see
host/firewalld.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import tempfile
from dataclasses import dataclass, replace
from typing import Any

from hostguard.findings import SkipReason
from hostguard.host.base import Host, HostError, Unavailable
from hostguard.netfilter.iptables_save import IptablesSaveError, parse_save
from hostguard.netfilter.model import Chain, Ruleset
from hostguard.netfilter.nft_json import RulesetError, parse_ruleset

IPTABLES_TABLES = ("filter", "nat", "raw", "mangle", "security")


@dataclass(frozen=True)
class FirewallFacts:
    """The combined ruleset and where it came from."""

    ruleset: Ruleset
    sources: tuple[str, ...]
    live: bool
    notes: tuple[str, ...] = ()
    routes: tuple[tuple[str, str], ...] = ()  # (address, output interface) for DNAT targets


def _merge(base: dict[tuple[str, str, str], Chain], extra: Ruleset, prefix: str = "") -> None:
    for (family, table, name), chain in extra.chains.items():
        key = (family, prefix + table, name)
        base[key] = replace(chain, table=prefix + table)


def _run_text(host: Host, argv: list[str]) -> str | None:
    try:
        result = host.run(argv)
    except Unavailable as exc:
        if exc.reason == SkipReason.TOOL_MISSING:
            return None
        raise
    if result.returncode != 0:
        err = result.stderr.decode("utf-8", "replace").strip()
        if "Permission denied" in err or "Operation not permitted" in err:
            raise Unavailable(SkipReason.NOT_ROOT, f"`{' '.join(argv)}` needs root: {err.splitlines()[-1]}")
        last = err.splitlines()[-1] if err else f"exit {result.returncode}"
        raise Unavailable(SkipReason.ERROR, f"`{' '.join(argv)}` failed: {last}")
    return result.stdout.decode("utf-8", "surrogateescape")


def _read_save(host: Host, tool: str, family: str, source: str, notes: list[str]) -> Ruleset | None:
    """One ``*-save`` tool's rules; None (with a note when it is an error) when there are none."""
    text = _run_text(host, [tool])
    if text is None:
        if source == "iptables-nft":  # needed to decode xt rules; a missing legacy tool just means no legacy rules
            notes.append(f"{tool} is not installed")
        return None
    if not text.strip():
        return None
    try:
        return parse_save(text, family, source)
    except IptablesSaveError as exc:
        notes.append(f"{tool}: {exc}")
        return None


def collect_live(host: Host) -> FirewallFacts:
    """Read the running ruleset of this network namespace."""
    chains: dict[tuple[str, str, str], Chain] = {}
    sets: dict[tuple[str, str, str], tuple[str, ...]] = {}
    sources: list[str] = []
    notes: list[str] = []
    data = _run_text(host, ["nft", "-j", "list", "ruleset"])
    if data is not None:
        listing = _run_text(host, ["nft", "-a", "list", "ruleset"]) or ""
        try:
            nft = parse_ruleset(data, listing)
        except RulesetError as exc:
            raise Unavailable(SkipReason.ERROR, str(exc)) from exc
        chains.update(nft.chains)
        sets.update(nft.sets)
        sources.append("nft -j list ruleset")
        for family, tool in (("ip", "iptables-save"), ("ip6", "ip6tables-save")):
            if not any(c.family == family and c.source == "iptables-nft" for c in nft.chains.values()):
                continue
            decoded = _read_save(host, tool, family, "iptables-nft", notes)
            if decoded is None:
                notes.append(f"iptables-nft rules in {family} tables stay opaque")
                continue
            tables = {t for (_, t, _) in decoded.chains}
            for key in [k for k in chains if k[0] == family and k[1] in tables]:
                del chains[key]
            _merge(chains, decoded)
            sources.append(tool)
    for family, tool in (("ip", "iptables-legacy-save"), ("ip6", "ip6tables-legacy-save")):
        legacy = _read_save(host, tool, family, "iptables-legacy", notes)
        if legacy is not None and legacy.chains:
            _merge(chains, legacy, prefix="legacy:")
            sources.append(tool)
    if not sources:
        raise Unavailable(SkipReason.TOOL_MISSING, "neither nft nor iptables-legacy-save is installed")
    ruleset = Ruleset(chains, sets, tuple(sources), tuple(notes))
    targets = {r.target.rpartition(":")[0].strip("[]") for c in chains.values() for r in c.rules
               if r.verdict == "dnat" and r.target and not r.target.startswith(":")}
    routes = tuple((a, oif) for a in sorted(targets) if a and (oif := route_oif(host, a)))
    return FirewallFacts(ruleset, tuple(sources), True, tuple(notes), routes)


def _service_enabled(host: Host, unit: str) -> bool:
    for base in ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"):
        for wants in host.listdir(base):
            if wants.endswith(".wants") and unit in host.listdir(f"{base}/{wants}"):
                return True
    return False


def load_nft_file(host: Host, path: str) -> Ruleset:
    """Load an nftables config file of the tree with the real ``nft``, inside a throwaway network namespace."""
    if os.geteuid() != 0:
        raise Unavailable(SkipReason.NOT_ROOT, f"loading {path} into a private network namespace needs root")
    text = host.read_text(path)

    def into_tree(m: re.Match[str]) -> str:
        target = m.group(2)
        return f'{m.group(1)}"{host.root.rstrip("/")}{target}"' if target.startswith("/") else m.group(0)

    text = re.sub(r'^(\s*include\s+)"([^"]+)"', into_tree, text, flags=re.M)
    ns = f"hgload{secrets.token_hex(4)}"
    with tempfile.NamedTemporaryFile("w", suffix=".nft", delete=False, encoding="utf-8", errors="surrogateescape") as fh:
        fh.write(text)
        tmp = fh.name
    try:
        _check(["ip", "netns", "add", ns], "ip netns add")
        result = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", tmp], capture_output=True, text=True,
                                errors="replace")
        if result.returncode != 0:
            first = (result.stderr.strip().splitlines() or ["nft failed"])[0].replace(tmp, path)
            raise Unavailable(SkipReason.ERROR, f"nft cannot load {path}: {first}")
        data = _check(["ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset"], "nft -j")
        listing = _check(["ip", "netns", "exec", ns, "nft", "-a", "list", "ruleset"], "nft -a")
        return parse_ruleset(data, listing, source=path)
    except FileNotFoundError as exc:
        raise Unavailable(SkipReason.TOOL_MISSING, f"`{exc.filename}` is not installed") from exc
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        with contextlib.suppress(OSError):
            os.unlink(tmp)


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


def load_ufw(host: Host) -> Ruleset:
    """What ufw loads at boot for this tree: ufw's own ufw-init, fed sanitised copies of the tree's
    settings and rule files, run inside a throwaway network namespace; the result read with iptables-save.
    Nothing from the tree is executed or sourced."""
    if os.geteuid() != 0:
        raise Unavailable(SkipReason.NOT_ROOT, "evaluating ufw's configuration in a private network namespace needs root")
    if not os.access(UFW_INIT, os.X_OK):
        raise Unavailable(SkipReason.TOOL_MISSING, "ufw is enabled in the tree; install ufw here to evaluate it")
    ns = f"hgufw{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="hostguard-ufw-") as data:
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
                raise Unavailable(SkipReason.ERROR, f"ufw is enabled but /etc/ufw/{name} is missing")
            with open(f"{data}/etc/ufw/{name}", "w", encoding="utf-8", errors="surrogateescape") as fh:
                fh.write(text)
        try:
            _check(["ip", "netns", "add", ns], "ip netns add")
            result = subprocess.run(["ip", "netns", "exec", ns, UFW_INIT, "--datadir", data, "start"],
                                    capture_output=True, text=True, errors="replace")
            if result.returncode != 0:
                first = (result.stderr.strip().splitlines() or ["ufw-init failed"])[0].replace(data, "")
                raise Unavailable(SkipReason.ERROR, f"ufw cannot load /etc/ufw: {first}")
            chains: dict[tuple[str, str, str], Chain] = {}
            for family, tool in (("ip", "iptables-save"), ("ip6", "ip6tables-save")):
                text = _check(["ip", "netns", "exec", ns, tool], tool)
                _merge(chains, parse_save(text, family, "ufw"))
            return Ruleset(chains, {}, ("ufw",))
        except IptablesSaveError as exc:
            raise Unavailable(SkipReason.ERROR, f"ufw's loaded rules: {exc}") from exc
        finally:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _check(argv: list[str], what: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, errors="replace")
    if result.returncode != 0:
        raise Unavailable(SkipReason.ERROR, f"{what}: {result.stderr.strip()[:200]}")
    return result.stdout


def collect_static(host: Host) -> FirewallFacts:
    """The ruleset a tree would load at boot."""
    chains: dict[tuple[str, str, str], Chain] = {}
    sources: list[str] = []
    notes: list[str] = []
    if host.exists("/etc/nftables.conf") and _service_enabled(host, "nftables.service"):
        chains.update(load_nft_file(host, "/etc/nftables.conf").chains)
        sources.append("/etc/nftables.conf")
    for family, path in (("ip", "/etc/iptables/rules.v4"), ("ip6", "/etc/iptables/rules.v6")):
        text = host.read_optional(path)
        if text is None:
            continue
        try:
            _merge(chains, parse_save(text, family, path), prefix="saved:" if chains else "")
        except IptablesSaveError as exc:
            raise Unavailable(SkipReason.ERROR, f"{path}: {exc}") from exc
        sources.append(path)
    ufw = host.read_optional("/etc/ufw/ufw.conf") or ""
    if re.search(r"^\s*ENABLED\s*=\s*yes", ufw, re.M):
        _merge(chains, load_ufw(host), prefix="ufw:" if chains else "")
        sources.append("/etc/ufw (ufw)")
        if host.exists("/etc/ufw/before.init") or host.exists("/etc/ufw/after.init"):
            notes.append("ufw's before.init/after.init scripts were not run (never executed from a tree)")
    if host.exists("/etc/firewalld/firewalld.conf") and _service_enabled(host, "firewalld.service"):
        from hostguard.host.firewalld import firewalld_ruleset

        _merge(chains, firewalld_ruleset(host))
        sources.append("/etc/firewalld (firewalld)")
    if not sources:
        notes.append("no firewall configuration is loaded at boot")
    return FirewallFacts(Ruleset(chains, {}, tuple(sources), tuple(notes)), tuple(sources), False, tuple(notes))


def collect_firewall(host: Host, config: dict[str, Any]) -> FirewallFacts:
    """The live ruleset, or the tree's boot-time configuration under --root."""
    try:
        return collect_live(host) if host.live else collect_static(host)
    except HostError as exc:
        raise Unavailable(SkipReason.ERROR, str(exc)) from exc


def route_oif(host: Host, address: str) -> str | None:
    """The interface the live host would send ``address`` out of (for DNAT targets)."""
    try:
        result = host.run(["ip", "-o", "route", "get", address])
    except Unavailable:
        return None
    m = re.search(r"\bdev (\S+)", result.stdout.decode("utf-8", "replace"))
    return m.group(1) if m else None
