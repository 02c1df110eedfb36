"""``iptables-save`` / ``ip6tables-save`` text (and /etc/iptables/rules.v4) to the model.

Used for rules that nft's JSON shows only as opaque ``xt`` objects (iptables-nft with conntrack,
multiport, ... matches), for iptables-legacy rules nft cannot see at all, and for saved rule files.
"""

from __future__ import annotations

import shlex

from hostguard.netfilter.model import Chain, Match, Rule, Ruleset

# Built-in chains: (table, chain) -> (hook, priority, type), as netfilter orders them.
BUILTIN = {
    ("raw", "PREROUTING"): ("prerouting", -300, "filter"),
    ("mangle", "PREROUTING"): ("prerouting", -150, "filter"),
    ("nat", "PREROUTING"): ("prerouting", -100, "nat"),
    ("mangle", "INPUT"): ("input", -150, "filter"),
    ("filter", "INPUT"): ("input", 0, "filter"),
    ("security", "INPUT"): ("input", 50, "filter"),
    ("nat", "INPUT"): ("input", 100, "nat"),
    ("raw", "OUTPUT"): ("output", -300, "filter"),
    ("mangle", "OUTPUT"): ("output", -150, "filter"),
    ("nat", "OUTPUT"): ("output", -100, "nat"),
    ("filter", "OUTPUT"): ("output", 0, "filter"),
    ("security", "OUTPUT"): ("output", 50, "filter"),
    ("mangle", "POSTROUTING"): ("postrouting", -150, "filter"),
    ("nat", "POSTROUTING"): ("postrouting", 100, "nat"),
    ("mangle", "FORWARD"): ("forward", -150, "filter"),
    ("filter", "FORWARD"): ("forward", 0, "filter"),
    ("security", "FORWARD"): ("forward", 50, "filter"),
}
HARMLESS_MATCHES = {"comment", "tcp", "udp", "limit", "hashlimit", "mark", "connmark", "pkttype"}
# Matches that an ordinary new TCP/UDP connection never satisfies (IPv6 type-0 routing headers).
NEVER_ON_NEW_CONNECTIONS = {"rt"}
# -m recent options that take a value; --set/--update/--rcheck/--remove/--rsource/--rdest/--reap do not.
RECENT_VALUES = {"--name", "--seconds", "--hitcount", "--mask", "--rttl"}
HASHLIMIT_VALUES = {"--hashlimit-upto", "--hashlimit-above", "--hashlimit-burst", "--hashlimit-mode",
                    "--hashlimit-srcmask", "--hashlimit-dstmask", "--hashlimit-name", "--hashlimit-htable-size",
                    "--hashlimit-htable-max", "--hashlimit-htable-expire", "--hashlimit-htable-gcinterval",
                    "--hashlimit-rate-match", "--hashlimit-rate-interval"}


class IptablesSaveError(Exception):
    """The text is not iptables-save output."""


def _rule(args: list[str], text: str) -> tuple[str, Rule]:
    matches: list[Match] = []
    verdict: str | None = None
    target: str | None = None
    opaque: str | None = None
    chain = ""
    i = 0
    negate = False
    module = ""
    recent: dict[str, str] = {}

    def value() -> str:
        nonlocal i
        i += 1
        if i >= len(args):
            raise IptablesSaveError(f"option {args[i - 1]} without a value")
        return args[i]

    while i < len(args):
        a = args[i]
        if a == "!":
            negate = True
            i += 1
            continue
        if a == "-A":
            chain = value()
        elif a in ("-p", "--protocol"):
            matches.append(Match("l4proto", (value(),), negate))
        elif a in ("-s", "--source"):
            matches.append(Match("saddr", tuple(value().split(",")), negate))
        elif a in ("-d", "--destination"):
            matches.append(Match("daddr", tuple(value().split(",")), negate))
        elif a in ("-i", "--in-interface"):
            name = value()
            matches.append(Match("iif", (name[:-1] + "*" if name.endswith("+") else name,), negate))
        elif a in ("-o", "--out-interface"):
            name = value()
            matches.append(Match("oif", (name[:-1] + "*" if name.endswith("+") else name,), negate))
        elif a in ("--dport", "--destination-port", "--dports", "--destination-ports"):
            ports = tuple(p.replace(":", "-") for p in value().split(","))
            matches.append(Match("dport", ports, negate))
        elif a in ("--ctstate", "--state"):
            matches.append(Match("ct_state", tuple(s.lower() for s in value().split(",")), negate))
        elif a == "--ctorigdstport" and module == "conntrack":
            matches.append(Match("orig_dport", (value().replace(":", "-"),), negate))
        elif a == "--ctdir" and module == "conntrack":
            if (value().upper() == "ORIGINAL") == negate:  # a new connection's packet is in the original direction
                matches.append(Match("never", ("--ctdir REPLY",)))
        elif a == "--dst-type" and module == "addrtype":
            matches.append(Match("dst_type", tuple(k.lower() for k in value().split(",")), negate))
        elif a == "-m":
            module = value()
            if module in NEVER_ON_NEW_CONNECTIONS:
                matches.append(Match("never", (module,)))
            elif module not in HARMLESS_MATCHES | {"conntrack", "state", "multiport", "addrtype", "recent"}:
                opaque = opaque or f"match -m {module}"
        elif module == "recent" and a in RECENT_VALUES | {"--set", "--update", "--rcheck", "--remove", "--rsource",
                                                            "--rdest", "--reap"}:
            recent[a] = value() if a in RECENT_VALUES else ""
        elif module == "hashlimit" and a in HASHLIMIT_VALUES:
            rate = value()
            if a == "--hashlimit-above":  # holds only for a source above the rate
                matches.append(Match("rate_over", (rate,)))
        elif a == "--comment":
            value()
        elif a in ("-j", "--jump", "-g", "--goto"):
            name = value()
            if name in ("ACCEPT", "DROP", "RETURN", "REJECT"):
                verdict = name.lower()
            elif name == "DNAT":
                verdict = "dnat"
            elif name == "REDIRECT":
                verdict, target = "dnat", ":"
            elif name in ("LOG", "MARK", "CONNMARK", "CT", "NOTRACK", "TCPMSS", "MASQUERADE", "SNAT", "NFLOG",
                          "TRACE", "CHECKSUM"):
                verdict = None
            else:  # a user chain, or an extension target: told apart once every chain is known
                verdict, target = ("goto" if a in ("-g", "--goto") else "jump"), name
        elif a == "--to-destination":
            target = value()
        elif a == "--to-ports":
            target = ":" + value()
        elif a in ("--rt-type",):
            value()
        elif a in ("--reject-with", "--log-prefix", "--log-level", "--set-mark", "--set-xmark", "--limit",
                   "--limit-burst", "--tcp-flags", "--syn", "--mss", "--clamp-mss-to-pmtu"):
            if a == "--tcp-flags":
                i += 1
            if a != "--syn":
                value()
        elif a.startswith("-"):
            opaque = opaque or f"option {a}"
            if i + 1 < len(args) and not args[i + 1].startswith("-"):
                i += 1
        negate = False
        i += 1
    if recent:
        matches, opaque = _recent(recent, matches, opaque)
    if verdict is None and target is None and (opaque or "").startswith(("match ", "option ")):
        # no verdict (MASQUERADE, LOG, ... or none): whatever its matches say, it decides nothing about
        # who gets in (Docker's `-o docker0 -m addrtype --src-type LOCAL -j MASQUERADE`)
        opaque = None
    return chain, Rule(tuple(matches), verdict, target, text, opaque)


def _recent(options: dict[str, str], matches: list[Match], opaque: str | None) -> tuple[list[Match], str | None]:
    """``-m recent``: ``--set`` always holds (it records the source); ``--update``/``--rcheck`` with a
    ``--hitcount`` of 2 or more holds only for a source seen that often within ``--seconds`` — never for a
    first connection, so such a rule rate-limits (ufw's ``limit``). Any other use (port knocking: a
    source seen *once* before) depends on history the ruleset does not show: opaque."""
    if "--set" in options and not ({"--update", "--rcheck", "--remove"} & options.keys()):
        return matches, opaque
    hits = options.get("--hitcount", "")
    if ({"--update", "--rcheck"} & options.keys()) and hits.isdigit() and int(hits) >= 2:
        return [*matches, Match("rate_over", (f"{hits} in {options.get('--seconds', '?')}s",))], opaque
    return matches, opaque or "match -m recent on earlier connections"


def parse_save(text: str, family: str, source: str) -> Ruleset:
    """Parse one ``iptables-save`` document; ``family`` is ``ip`` or ``ip6``."""
    chains: dict[tuple[str, str, str], dict[str, object]] = {}
    rules: dict[tuple[str, str, str], list[Rule]] = {}
    table = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = line[1:]
            continue
        if line == "COMMIT":
            table = ""
            continue
        if not table:
            raise IptablesSaveError(f"line {number}: rule outside a *table section")
        if line.startswith(":"):
            parts = line[1:].split()
            if not parts:
                raise IptablesSaveError(f"line {number}: empty chain declaration")
            policy = parts[1].lower() if len(parts) > 1 and parts[1] != "-" else "accept"
            chains[(family, table, parts[0])] = {"policy": policy}
            continue
        if line.startswith("-A"):
            try:
                args = shlex.split(line)
            except ValueError as exc:
                raise IptablesSaveError(f"line {number}: {exc}") from exc
            chain, rule = _rule(args, line)
            rules.setdefault((family, table, chain), []).append(rule)
            chains.setdefault((family, table, chain), {"policy": "accept"})
            continue
        if line.startswith(("-N", "-P", "-I")):
            raise IptablesSaveError(f"line {number}: command {line.split()[0]} is not iptables-save output")
        raise IptablesSaveError(f"line {number}: not iptables-save syntax")
    out = {}
    for key, info in chains.items():
        hook = BUILTIN.get((key[1], key[2]))
        chain_rules = tuple(
            Rule(r.matches, None, None, r.text, r.opaque or f"target -j {r.target}", r.handle)
            if r.verdict in ("jump", "goto") and (family, key[1], r.target) not in chains else r
            for r in rules.get(key, []))
        out[key] = Chain(key[0], key[1], key[2], chain_rules, hook[0] if hook else None,
                         hook[1] if hook else 0, str(info["policy"]) if hook else "accept",
                         hook[2] if hook else "filter", source)
    return Ruleset(out, {}, (source,))
