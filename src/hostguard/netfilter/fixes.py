"""Firewall fixes as data: the steps that make a ruleset deny by default, or drop one port.

Every fix is built for the front end the host already uses (ufw, firewalld, saved iptables rules restored
by netfilter-persistent, plain nftables) and for the back end that holds the accepting rule (an nft chain,
iptables-nft, iptables-legacy), for each IP version the finding names. Every fix keeps the SSH port(s),
loopback and established connections open: a firewall fix must never lock the owner out. Nothing here
reads the host: the checks pass the facts in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from hostguard.netfilter.evaluate import Query, match_holds
from hostguard.netfilter.model import Chain, Rule, Ruleset
from hostguard.remediation import Command, Edit, Param, Remediation, Step, Write

NFT_FILE = "/etc/nftables.d/hostguard.nft"
NFT_CONF = "/etc/nftables.conf"
INCLUDE = f'include "{NFT_FILE}"'
SAVED = {4: "/etc/iptables/rules.v4", 6: "/etc/iptables/rules.v6"}
ND_TYPES = "nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, echo-request"
ND_ICMPV6 = (135, 136, 134, 128)  # the same, as iptables' --icmpv6-type numbers
TRUSTED = Param("TRUSTED_NET", "the network allowed to reach the port", "198.51.100.0/24")


@dataclass(frozen=True)
class KeepOpen:
    """What a default-deny ruleset must still accept (besides loopback, established and ICMPv6 ND)."""

    ssh: tuple[int, ...]        # sshd's TCP ports: always open
    tcp: tuple[int, ...] = ()   # other allowed TCP ports
    udp: tuple[int, ...] = ()   # allowed UDP ports
    dhcpv6: bool = False        # a DHCP client runs: accept DHCPv6 replies (udp 546 from link-local)

    @property
    def tcp_ports(self) -> tuple[int, ...]:
        """SSH and the other TCP ports, sorted, once each."""
        return tuple(sorted({*self.ssh, *self.tcp}))

    def describe(self) -> str:
        """"TCP 22, 80, 443; UDP 53" for people."""
        parts = ["TCP " + ", ".join(map(str, self.tcp_ports))]
        if self.udp:
            parts.append("UDP " + ", ".join(map(str, sorted(self.udp))))
        return "; ".join(parts)


def front_end(ruleset: Ruleset) -> str:
    """The tool that manages the firewall: ufw, firewalld, saved (netfilter-persistent) or nftables."""
    chains = ruleset.chains.values()
    if any(c.name.startswith(("ufw-", "ufw6-")) or c.source == "ufw" for c in chains):
        return "ufw"
    if any(c.source == "firewalld" or c.table.split(":")[-1] == "firewalld" for c in chains):
        return "firewalld"
    if any(s in SAVED.values() for s in ruleset.sources):
        return "saved"
    return "nftables"


# -- default deny ----------------------------------------------------------------------------------


def nft_default_deny(keep: KeepOpen) -> str:
    """/etc/nftables.d/hostguard.nft: ``table inet hostguard`` declared, deleted and defined again, so
    ``nft -f`` of it is idempotent and leaves every other table (Docker's, fail2ban's) alone."""
    lines = [
        "# Written by hostguard (firewall.default_allow): drop incoming connections nothing below accepts.",
        "# Declared, deleted and defined again, so loading this file twice is harmless; other tables",
        "# (Docker's, fail2ban's) are left alone: never `flush ruleset`.",
        "table inet hostguard {}",
        "delete table inet hostguard",
        "table inet hostguard {",
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy drop;",
        '\t\tiif "lo" accept',
        "\t\tct state established,related accept",
        f"\t\ticmpv6 type {{ {ND_TYPES} }} accept",
    ]
    if keep.dhcpv6:
        lines.append("\t\tip6 saddr fe80::/10 udp dport 546 accept")
    lines.append(f"\t\ttcp dport {{ {', '.join(map(str, keep.tcp_ports))} }} accept")
    if keep.udp:
        lines.append(f"\t\tudp dport {{ {', '.join(map(str, sorted(keep.udp)))} }} accept")
    return "\n".join([*lines, "\t}", "}", ""])


def _nft_steps(keep: KeepOpen, files: Mapping[str, str]) -> tuple[Step, ...]:
    steps: list[Step] = [Write(NFT_FILE, nft_default_deny(keep), "0644")]
    conf = files.get(NFT_CONF)
    if conf is None:
        steps.append(Write(NFT_CONF, f"#!/usr/sbin/nft -f\n{INCLUDE}\n", "0755"))
    elif not any(line.strip() == INCLUDE for line in conf.splitlines()):
        lines = conf.splitlines()
        if lines:
            steps.append(Edit(NFT_CONF, len(lines), lines[-1], f"{lines[-1]}\n{INCLUDE}"))
        else:
            steps.append(Write(NFT_CONF, f"#!/usr/sbin/nft -f\n{INCLUDE}\n", "0755"))
    steps += [Command(("systemctl", "enable", "nftables")),
              Command(("nft", "-f", NFT_FILE), undo=("nft", "delete", "table", "inet", "hostguard"), reversible=True)]
    return tuple(steps)


def saved_rules(version: int, keep: KeepOpen) -> list[str]:
    """The ``-A INPUT`` lines a saved iptables file needs before its policy becomes DROP."""
    out = ["-A INPUT -i lo -j ACCEPT", "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"]
    if version == 6:
        out += [f"-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type {t} -j ACCEPT" for t in ND_ICMPV6]
        if keep.dhcpv6:
            out.append("-A INPUT -s fe80::/10 -p udp -m udp --dport 546 -j ACCEPT")
    out += [f"-A INPUT -p tcp -m tcp --dport {p} -j ACCEPT" for p in keep.tcp_ports]
    out += [f"-A INPUT -p udp -m udp --dport {p} -j ACCEPT" for p in sorted(keep.udp)]
    return out


def _filter_input(text: str) -> tuple[int, str, int, str] | None:
    """(policy line number, its text, first line after the chain declarations, its text) of *filter."""
    lines = text.splitlines()
    policy: tuple[int, str] | None = None
    in_filter = False
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith("*"):
            in_filter = stripped == "*filter"
            continue
        if not in_filter or not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith(":INPUT "):
            policy = (number, line)
        elif not stripped.startswith(":"):
            return (policy[0], policy[1], number, line) if policy else None
    return None


def _saved_steps(versions: Iterable[int], keep: KeepOpen, files: Mapping[str, str]) -> tuple[Step, ...] | None:
    steps: list[Step] = []
    for version in versions:
        path = SAVED[version]
        text = files.get(path)
        rules = saved_rules(version, keep)
        if text is None:
            content = ["*filter", ":INPUT DROP [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]", *rules, "COMMIT"]
            steps.append(Write(path, "# Written by hostguard (firewall.default_allow)\n" + "\n".join(content) + "\n",
                               "0640"))
            continue
        found = _filter_input(text)
        if found is None or found[1].split()[1] != "ACCEPT":
            return None
        number, line, first, first_line = found
        steps.append(Edit(path, number, line, ":INPUT DROP [0:0]"))
        steps.append(Edit(path, first, first_line, "\n".join([*rules, first_line])))
    steps.append(Command(("netfilter-persistent", "reload")))
    return tuple(steps)


# firewalld's own nft chains of a zone (a running host): filter_IN_<zone> and its _pre/_log/_deny/_allow/_post.
LIVE_ZONE_CHAIN = re.compile(r"^\S+ \S+ \w+?_IN_([\w-]+?)(?:_(?:pre|log|deny|allow|post))?: ")


def _live_zone(decider: str) -> str | None:
    m = LIVE_ZONE_CHAIN.match(decider)
    return m.group(1) if m else None


def _firewalld_zone(deciders: Sequence[str]) -> str | None:
    for decider in deciders:
        m = re.search(r"zone ([\w-]+): target", decider)
        zone = m.group(1) if m else _live_zone(decider)
        if zone:
            return zone
    return None


def default_deny(ruleset: Ruleset, versions: Sequence[int], deciders: Sequence[str], keep: KeepOpen | None,
                 files: Mapping[str, str], why_unknown: str, live: bool) -> Remediation:
    """Deny by default in the front end in use, keeping ``keep`` (and always SSH) open."""
    if keep is None or not keep.ssh:
        return Remediation.by_hand(
            "Make the firewall drop incoming connections by default, after allowing your SSH port.",
            f"The SSH port cannot be known here ({why_unknown}), and a default deny without it would lock you out: "
            "allow the port you log in on first, then set the default incoming policy to drop.")
    where = ("" if live else " Under --root the open ports come from the config and the sshd files "
             "(no live listeners): check the list before applying.")
    kept = f"Kept open: {keep.describe()}, loopback, established/related connections"
    tool = front_end(ruleset)
    if tool == "ufw":
        steps: list[Step] = [Command(("ufw", "allow", f"{p}/tcp")) for p in keep.tcp_ports]
        steps += [Command(("ufw", "allow", f"{p}/udp")) for p in sorted(keep.udp)]
        steps.append(Command(("ufw", "default", "deny", "incoming"), undo=("ufw", "default", "allow", "incoming"),
                             reversible=True))
        return Remediation(f"ufw: allow the needed ports, then deny incoming by default. {kept} (ufw's own "
                           f"before-rules keep ICMPv6 and DHCPv6).{where}", tuple(steps))
    if tool == "firewalld":
        zone = _firewalld_zone(deciders)
        if zone is None:
            return Remediation.by_hand(
                "firewalld: give the zone your interfaces use the target `default` (reject what it does not allow).",
                "The zone that accepts everything could not be told from the ruleset: find it with "
                "`firewall-cmd --get-active-zones`, add your SSH port to it, then set its target to default.")
        steps = [Command(("firewall-cmd", "--permanent", f"--zone={zone}", f"--add-port={p}/tcp"))
                 for p in keep.tcp_ports]
        steps += [Command(("firewall-cmd", "--permanent", f"--zone={zone}", f"--add-port={p}/udp"))
                  for p in sorted(keep.udp)]
        if keep.dhcpv6:
            steps.append(Command(("firewall-cmd", "--permanent", f"--zone={zone}", "--add-service=dhcpv6-client")))
        steps += [Command(("firewall-cmd", "--permanent", f"--zone={zone}", "--set-target=default")),
                  Command(("firewall-cmd", "--reload"))]
        return Remediation(f"firewalld: open the needed ports in zone {zone}, then make it reject the rest "
                           f"(target default; ICMP stays allowed). {kept}.{where}", tuple(steps))
    if tool == "saved":
        saved = _saved_steps(versions, keep, files)
        if saved is not None:
            return Remediation(f"Saved iptables rules ({', '.join(SAVED[v] for v in versions)}): accept what is "
                               f"needed, then make the INPUT policy DROP; netfilter-persistent loads them at boot. "
                               f"{kept}, ICMPv6 neighbour discovery.{where}", saved)
    return Remediation(f"nftables: write {NFT_FILE} (its own table inet hostguard, policy drop), include it from "
                       f"{NFT_CONF} and enable the nftables service so it loads at boot; load it now without "
                       f"touching other tables. {kept}, ICMPv6 neighbour discovery and router advertisements"
                       f"{', DHCPv6 replies' if keep.dhcpv6 else ''}.{where}", _nft_steps(keep, files))


# -- one port --------------------------------------------------------------------------------------


def _base_of(ruleset: Ruleset, decider: str) -> Chain | None:
    """The base input chain whose traversal let the decider's verdict through."""
    for chain in ruleset.chains.values():
        if decider.startswith(chain.label + ": "):
            if chain.hook == "input":
                return chain
            same = [c for c in ruleset.base_chains("input") if (c.family, c.table) == (chain.family, chain.table)]
            return same[0] if same else None
    return None


def _nft_rule_line(text: str, chain: Chain) -> tuple[int, str] | None:
    """The ``type ... hook input`` line of ``chain`` in an nftables.conf text, when written plainly."""
    table = chain.table.split(":")[-1]
    in_table = in_chain = False
    for number, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        m = re.match(r"table\s+(\w+)\s+(\S+)\s*\{", s)
        if m:
            in_table = (m.group(1), m.group(2)) == (chain.family, table)
            continue
        m = re.match(r"chain\s+(\S+)\s*\{", s)
        if m:
            in_chain = in_table and m.group(1) == chain.name
            continue
        if in_chain and s.startswith("type ") and "hook input" in s:
            return number, line
    return None


def _iptables_drop(tool: str, chain: Chain, proto: str, port: int) -> Command:
    table = chain.table.split(":")[-1]
    return Command((tool, "-t", table, "-I", chain.name, "!", "-i", "lo", "-p", proto, "-m", proto, "--dport",
                    str(port), "-j", "DROP"),
                   undo=(tool, "-t", table, "-D", chain.name, "!", "-i", "lo", "-p", proto, "-m", proto, "--dport",
                         str(port), "-j", "DROP"), reversible=True)


FIREWALLD_PORT = re.compile(r"zone ([^\s:]+): port (\d+(?:-\d+)?)/(\w+)")
FIREWALLD_SERVICE = re.compile(r"zone ([^\s:]+): service (\S+) \((.*)\)")
FIREWALLD_OTHER = re.compile(r"zone ([^\s:]+): ")


@dataclass(frozen=True)
class _Removal:
    """One entry of a zone that lets the port in: ``--remove-port=P/PROTO`` or ``--remove-service=NAME``."""

    zone: str
    kind: str   # "port" or "service"
    value: str

    def step(self) -> Command:
        base = ("firewall-cmd", "--permanent", f"--zone={self.zone}")
        return Command((*base, f"--remove-{self.kind}={self.value}"), undo=(*base, f"--add-{self.kind}={self.value}"),
                       reversible=True)


def _rule_text(decider: str) -> str:
    """The rule text of a decider (``CHAIN: `TEXT```)."""
    _, _, rest = decider.partition(": `")
    return rest[:-1] if rest.endswith("`") else rest


def _zone_entries(ruleset: Ruleset, zone: str, proto: str, port: int) -> list[Rule]:
    """The accepting rules of a zone (as host/firewalld.py models it) whose protocol and port take ``port``."""
    chain = ruleset.chains.get(("inet", "firewalld", f"zone_{zone}"))
    if chain is None:
        return []
    query = Query(4, proto, port, "")
    return [r for r in chain.rules if r.verdict == "accept" and all(
        match_holds(m, query) is not False for m in r.matches if m.field in ("l4proto", "dport"))]


def firewalld_drop(ruleset: Ruleset, proto: str, port: int, open_deciders: Mapping[int, Sequence[str]]) -> Remediation:
    """firewalld: remove the zone's port entry, or a service that opens only this port, from each zone that lets
    anyone in, then reload; by hand where firewalld lets it in some other way.

    A service that also opens other ports is not removed: which of those are still needed only the owner knows,
    so the fix says which they are and how to keep them. A port range, a rich rule or an accepting target is
    left to the owner too: removing them would change more than this port.
    """
    deciders = list(dict.fromkeys(d for _, ds in sorted(open_deciders.items()) for d in ds))
    texts = [_rule_text(d) for d in deciders]
    rich = (f'`firewall-cmd --permanent --zone=ZONE --add-rich-rule=\'rule family="ipv4" source address="TRUSTED_NET" '
            f'port port="{port}" protocol="{proto}" accept\'` (family "ipv6" for an IPv6 network)')
    removals: list[_Removal] = []
    problems: list[str] = []
    zones = list(dict.fromkeys(m.group(1) for t in texts if (m := FIREWALLD_OTHER.match(t))))
    if not zones:
        live = [z for d in deciders if (z := _live_zone(d))]
        where = f"zone {live[0]}" if live else "the zone that accepts it (`firewall-cmd --get-active-zones`)"
        return Remediation.by_hand(
            f"firewalld: remove {port}/{proto} from {where}, or allow it only from your network.",
            "The running rules do not say whether a port entry, a service or a rich rule of the zone lets it in: "
            f"see `firewall-cmd --zone=ZONE --list-all`, then remove that entry with `--permanent` and run "
            f"`firewall-cmd --reload`, or accept only your network with {rich}: decided by "
            f"{'; '.join(deciders[:2])}.", TRUSTED, Param("ZONE", "the firewalld zone that accepts the port",
                                                          live[0] if live else "public"))
    for zone in zones:
        for rule in _zone_entries(ruleset, zone, proto, port):
            text = rule.text
            if m := FIREWALLD_PORT.fullmatch(text):
                if m.group(2) == str(port):
                    removals.append(_Removal(zone, "port", f"{port}/{m.group(3)}"))
                else:
                    problems.append(f"zone {zone} opens the range {m.group(2)}/{m.group(3)}: removing it would close "
                                    "the other ports of the range too; split it around this port")
            elif m := FIREWALLD_SERVICE.fullmatch(text):
                name = m.group(2)
                prefix = f"zone {zone}: service {name} ("
                chain = ruleset.chains[("inet", "firewalld", f"zone_{zone}")]
                opens = sorted({r.text[len(prefix):-1] for r in chain.rules if r.text.startswith(prefix)})
                others = [o for o in opens if o != f"{port}/{proto}"]
                if others:
                    problems.append(f"zone {zone} allows it through service {name}, which also opens "
                                    f"{', '.join(others)}: removing the service would close those too. If they "
                                    "are still needed, add them as ports first (`firewall-cmd --permanent "
                                    f"--zone={zone} --add-port=...`), then `--remove-service={name}`")
                else:
                    removals.append(_Removal(zone, "service", name))
            elif text.startswith(f"zone {zone}: rich rule") and any(
                    mm.field == "saddr" and not mm.negate for mm in rule.matches):
                continue  # a rich rule for chosen sources: not "anyone", and the owner's choice
            elif text.startswith(f"zone {zone}: target"):
                problems.append(f"zone {zone} accepts everything ({text.partition(': ')[2]}): apply the fix of "
                                "firewall.default_allow first (it gives the zone the target default)")
            else:
                problems.append(f"zone {zone} lets it in through `{text}`: change or remove that entry by hand")
    removals = list(dict.fromkeys(removals))
    if problems or not removals:
        one = len(zones) == 1
        return Remediation.by_hand(
            f"firewalld: close {port}/{proto} in zone {', '.join(zones)}, or allow it only from your network.",
            "; ".join(problems or [f"nothing of zone {', '.join(zones)} that hostguard can remove lets it in"])
            + ". Then run `firewall-cmd --reload`. To let only a trusted network in, add "
            + (rich.replace("ZONE", zones[0]) if one else rich) + ".",
            TRUSTED, *(() if one else (Param("ZONE", "the firewalld zone that accepts the port", zones[0]),)))
    steps: list[Step] = [r.step() for r in removals]
    steps.append(Command(("firewall-cmd", "--reload")))
    what = "; ".join(f"zone {r.zone}: {'port ' if r.kind == 'port' else 'service '}{r.value}" for r in removals)
    how = "To let a trusted network in, run after the steps: " + rich.replace("ZONE", removals[0].zone) + \
        ", then `firewall-cmd --reload`."
    return Remediation(f"firewalld: remove what lets anyone reach {port}/{proto} ({what}) from the permanent "
                       "configuration and reload. Only you know which network may reach it.", tuple(steps), how,
                       (TRUSTED,))


def _ufw_decides(ruleset: Ruleset, deciders: Sequence[str]) -> bool:
    """Whether a rule of one of ufw's chains lets the port in (live, the base chain is iptables' INPUT, which
    jumps to ufw's chains): then the fix belongs in ufw, which saves it and would undo a bare iptables insert."""
    ufw = [c.label for c in ruleset.chains.values() if c.name.startswith(("ufw-", "ufw6-")) or c.source == "ufw"]
    return any(d.startswith(label + ": ") for d in deciders for label in ufw)


def _ufw_deny(deciders: Sequence[str], proto: str, port: int) -> Command:
    """``ufw deny P/proto`` where ufw's own rule for exactly that port lets it in (ufw changes that rule's action
    in place: a new rule with the same match would be skipped as "existing"), else ``ufw prepend deny`` (first
    of all rules; `insert 1` fails when ufw has no rule yet)."""
    spec = f"{port}/{proto}"
    exact = re.compile(rf"ufw6?-user-input: `-A ufw6?-user-input -p {proto} (?:-m {proto} )?--dport {port} "
                       r"(?:-m conntrack --ctstate NEW -m recent --(?:set|update)\b.*"
                       r"|-j (?:ACCEPT|ufw6?-user-limit-accept))`$")
    if any(exact.search(d) for d in deciders):
        action = "limit" if any("limit" in d for d in deciders if exact.search(d)) else "allow"
        return Command(("ufw", "deny", spec), undo=("ufw", action, spec), reversible=True)
    return Command(("ufw", "prepend", "deny", spec), undo=("ufw", "delete", "deny", spec), reversible=True)


def drop_port(ruleset: Ruleset, proto: str, port: int, open_deciders: Mapping[int, Sequence[str]],
              ssh_ports: Sequence[int], files: Mapping[str, str]) -> Remediation:
    """Drop ``port`` for every address but loopback, in the back end that accepts it, for each open version.

    ``open_deciders`` maps each IP version the port is open on to the rules and policies that let it in.
    """
    versions = " and ".join(f"IPv{v}" for v in sorted(open_deciders))
    if proto == "tcp" and port in ssh_ports:
        return Remediation.by_hand(
            f"Limit the SSH port {port}/tcp to the networks you log in from.",
            "This is sshd's port: dropping it for everyone would lock you out. Insert an accept for your own "
            f"network above a drop of {port}/tcp (or add \"ssh\" to [ports] allowed if it is meant to be open).",
            TRUSTED)
    steps: list[Step] = []
    manual: list[str] = []
    seen: set[str] = set()
    where: list[str] = []
    for version, deciders in sorted(open_deciders.items()):
        chain = next((c for c in (_base_of(ruleset, d) for d in deciders) if c is not None), None)
        if chain is None:
            return Remediation.by_hand(
                f"Close {port}/{proto} over IPv{version}: no firewall chain filters it.",
                "No firewall filters this IP version: apply the fix of firewall.default_allow (a default deny "
                "that keeps SSH and the allowed ports open) first; it closes this port too.")
        if chain.label in seen:
            continue
        seen.add(chain.label)
        where.append(chain.label)
        saddr = "ip6 saddr" if version == 6 else "ip saddr"
        if _ufw_decides(ruleset, deciders) or chain.source == "ufw" or chain.name.startswith(("ufw-", "ufw6-")):
            if "ufw" not in seen:
                seen.add("ufw")
                steps.append(_ufw_deny(deciders, proto, port))
                manual.append(f"`ufw prepend allow from TRUSTED_NET to any port {port} proto {proto}`")
        elif chain.source == "firewalld" or chain.table.split(":")[-1] == "firewalld":
            return firewalld_drop(ruleset, proto, port, open_deciders)
        elif chain.source in ("iptables-nft", "iptables-legacy") or chain.source in SAVED.values():
            flavour = "legacy" if chain.source == "iptables-legacy" else "nft"
            tool = f"{'ip6' if chain.family == 'ip6' else 'ip'}tables-{flavour}"
            if chain.source in SAVED.values():
                text = files.get(chain.source)
                found = _filter_input(text) if text is not None and chain.name == "INPUT" else None
                if found is None:
                    return Remediation.by_hand(
                        f"Drop {port}/{proto} in {chain.source} ({chain.name}).",
                        f"The INPUT chain of the *filter table could not be found in {chain.source}: add "
                        f"`-A {chain.name} ! -i lo -p {proto} -m {proto} --dport {port} -j DROP` above the rule "
                        "that accepts it.")
                _, _, first, first_line = found
                steps.append(Edit(chain.source, first, first_line,
                                  f"-A INPUT ! -i lo -p {proto} -m {proto} --dport {port} -j DROP\n{first_line}"))
                tool = f"{'ip6' if chain.family == 'ip6' else 'ip'}tables"
            steps.append(_iptables_drop(tool, chain, proto, port))
            manual.append(f"`{tool} -I {chain.name} -s TRUSTED_NET -p {proto} -m {proto} --dport {port} -j ACCEPT`")
        else:
            rule = f'iifname != "lo" {proto} dport {port} drop'
            conf = files.get(NFT_CONF)
            line = _nft_rule_line(conf, chain) if conf is not None else None
            if line is not None:
                number, old = line
                indent = old[: len(old) - len(old.lstrip())]
                steps.append(Edit(NFT_CONF, number, old, f"{old}\n{indent}{rule}"))
            else:
                manual.append(f"add `{rule}` at the top of chain {chain.name} in the file that defines "
                              f"table {chain.family} {chain.table} so it survives a reboot")
            steps.append(Command(("nft", "insert", "rule", chain.family, chain.table.split(":")[-1], chain.name,
                                  "iifname", "!=", "lo", proto, "dport", str(port), "drop")))
            manual.append(f"`nft insert rule {chain.family} {chain.table.split(':')[-1]} {chain.name} "
                          f"{saddr} TRUSTED_NET {proto} dport {port} accept`")
    how = ("To let a trusted network in, run after the steps (each inserts above the drop): "
           + "; ".join(m for m in manual if "TRUSTED_NET" in m) + ".")
    extra = " ".join(m for m in manual if "TRUSTED_NET" not in m)
    return Remediation(f"Drop {port}/{proto} for every address but loopback over {versions}, in "
                       f"{', '.join(where)} (where it is let in). Only you know which network may reach it.",
                       tuple(steps), (how + (" Also " + extra if extra else "")).strip(), (TRUSTED,))
