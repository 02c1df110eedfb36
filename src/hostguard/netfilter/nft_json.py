"""nftables' JSON (``nft -j list ruleset``) to the model; rule text from ``nft -a list ruleset``.

A verdict map (``ct state vmap { established : accept, invalid : drop }``, ``tcp dport vmap @ports``) becomes
one model rule per element, each with the element's key as a match and its verdict: a map's keys are
disjoint, so at most one of them holds and the order does not matter. The devices of an ingress chain are
not in nft's JSON (1.0.6): they come from the listing too.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hostguard.netfilter.model import Chain, Match, Rule, Ruleset


class RulesetError(Exception):
    """The ruleset could not be read or parsed."""


IGNORED = {"counter", "log", "mangle", "notrack", "snat", "masquerade", "meta", "ct", "quota",
           "set", "flow", "synproxy", "secmark", "tproxy", "dup", "fwd", "numgen", "last"}


def _scalar(value: Any, sets: dict[str, tuple[str, ...]]) -> list[str]:
    """Values of a match's right-hand side as strings; named sets expanded."""
    if isinstance(value, str) and value.startswith("@"):
        if value[1:] not in sets:
            raise ValueError(f"unknown set {value}")
        return list(sets[value[1:]])
    if isinstance(value, bool):
        raise ValueError("boolean")
    if isinstance(value, int | str):
        return [str(value)]
    if isinstance(value, list):
        return [v for item in value for v in _scalar(item, sets)]
    if isinstance(value, dict):
        if "set" in value:
            return _scalar(value["set"], sets)
        if "range" in value:
            lo, hi = value["range"]
            return [f"{_scalar(lo, sets)[0]}-{_scalar(hi, sets)[0]}"]
        if "prefix" in value:
            return [f"{value['prefix']['addr']}/{value['prefix']['len']}"]
        if "elem" in value:
            return _scalar(value["elem"]["val"], sets)
    raise ValueError(f"unsupported value {json.dumps(value)[:80]}")


L4_HEADERS = {"tcp": "tcp", "udp": "udp", "sctp": "sctp", "dccp": "dccp", "udplite": "udplite",
              "icmp": "icmp", "icmpv6": "ipv6-icmp", "igmp": "igmp", "esp": "esp", "ah": "ah", "gre": "gre"}


class PartialMatch(ValueError):
    """A match that cannot be evaluated, but implies conditions that can (``icmpv6 type ...`` is ICMPv6)."""

    def __init__(self, message: str, implied: list[Match]) -> None:
        super().__init__(message)
        self.implied = implied


def _match(expr: dict[str, Any], sets: dict[str, tuple[str, ...]]) -> list[Match]:
    op = expr.get("op", "==")
    left = expr["left"]
    implied: list[Match] = []
    if "payload" in left and left["payload"].get("protocol") in L4_HEADERS:
        implied = [Match("l4proto", (L4_HEADERS[left["payload"]["protocol"]],))]
    try:
        return implied + _plain_match(op, left, expr["right"], sets)
    except ValueError as exc:
        raise PartialMatch(str(exc), implied) from exc


def _plain_match(op: str, left: dict[str, Any], right: Any, sets: dict[str, tuple[str, ...]]) -> list[Match]:
    if op not in ("==", "!=", "in"):
        raise ValueError(f"operator {op}")
    values = tuple(_scalar(right, sets))
    negate = op == "!="
    if "payload" in left:
        proto, fld = left["payload"].get("protocol"), left["payload"].get("field")
        if fld == "dport" and proto in ("tcp", "udp", "th", "sctp", "dccp", "udplite"):
            return [Match("dport", values, negate)]
        if fld in ("saddr", "daddr") and proto in ("ip", "ip6"):
            return [Match("nfproto", ("ipv4" if proto == "ip" else "ipv6",)), Match(fld, values, negate)]
        if (proto, fld) in (("ip", "protocol"), ("ip6", "nexthdr")):
            return [Match("l4proto", values, negate)]
        raise ValueError(f"payload {proto} {fld}")
    if "meta" in left:
        key = left["meta"]["key"]
        if key == "l4proto":
            return [Match("l4proto", values, negate)]
        if key in ("iif", "iifname"):
            return [Match("iif", values, negate)]
        if key == "nfproto":
            return [Match("nfproto", values, negate)]
        if key == "protocol":  # ethertype, in netdev and bridge chains
            names = {"ip": "ipv4", "ip6": "ipv6", "ipv4": "ipv4", "ipv6": "ipv6"}
            if all(v in names for v in values):
                return [Match("nfproto", tuple(names[v] for v in values), negate)]
            raise ValueError(f"meta protocol {', '.join(values)}")
        if key in ("oif", "oifname"):
            return [Match("oif", values, negate)]
        raise ValueError(f"meta {key}")
    if "ct" in left and left["ct"].get("key") == "state":
        return [Match("ct_state", values, negate)]
    if "ct" in left and left["ct"].get("key") == "direction":
        # a new connection's first packet is in the original direction
        return [] if ("original" in values) != negate else [Match("never", ("ct direction reply",))]
    if "ct" in left and left["ct"].get("key") == "proto-dst" and left["ct"].get("dir") == "original":
        return [Match("orig_dport", values, negate)]
    if "fib" in left and left["fib"].get("result") == "type" and "daddr" in left["fib"].get("flags", []):
        return [Match("dst_type", values, negate)]
    raise ValueError(f"match on {next(iter(left), '?')}")


VERDICTS = ("accept", "drop", "reject", "return", "jump", "goto", "continue")


def _verdict(body: Any) -> tuple[str | None, str | None]:
    """A map element's verdict ({"accept": null}, {"jump": {"target": "x"}}) as (verdict, target)."""
    if not isinstance(body, dict) or len(body) != 1:
        raise ValueError(f"map data {json.dumps(body)[:60]}")
    (kind, arg), = body.items()
    if kind not in VERDICTS:
        raise ValueError(f"map verdict {kind}")
    if kind in ("jump", "goto"):
        return kind, arg["target"]
    return (None if kind == "continue" else kind), None


def _vmap(body: dict[str, Any], sets: dict[str, tuple[str, ...]],
          maps: dict[str, list[Any]]) -> list[tuple[list[Match], str | None, str | None]]:
    """A verdict map as (matches, verdict, target) per element."""
    data = body["data"]
    if isinstance(data, str) and data.startswith("@"):
        if data[1:] not in maps:
            raise ValueError(f"unknown map {data}")
        elements = maps[data[1:]]
    elif isinstance(data, dict) and isinstance(data.get("set"), list):
        elements = data["set"]
    else:
        raise ValueError("verdict map data")
    out = []
    for element in elements:
        if not (isinstance(element, list) and len(element) == 2):
            raise ValueError("verdict map element")
        key, verdict = element
        if isinstance(key, dict) and "concat" in key:
            raise ValueError("verdict map on concatenated keys")
        matches = _match({"op": "==", "left": body["key"], "right": key}, sets)
        out.append((matches, *_verdict(verdict)))
    return out


def parse_rules(exprs: list[dict[str, Any]], sets: dict[str, tuple[str, ...]], text: str, handle: int | None,
                maps: dict[str, list[Any]] | None = None) -> list[Rule]:
    """One rule's expression list: one model rule, or one per element of a verdict map it ends in."""
    matches: list[Match] = []
    verdict: str | None = None
    target: str | None = None
    opaque: str | None = None
    branches: list[tuple[list[Match], str | None, str | None]] | None = None
    statement_unknown = False  # a statement (not a match) could not be read: it might decide
    for expr in exprs:
        (kind, body), = expr.items()
        statement = kind != "match" and not (kind == "xt" and isinstance(body, dict) and body.get("type") == "match")
        try:
            if kind == "match":
                matches.extend(_match(body, sets))
            elif kind in ("accept", "drop", "return"):
                verdict = kind
            elif kind == "reject":
                verdict = "reject"
            elif kind in ("jump", "goto"):
                verdict, target = kind, body["target"]
            elif kind == "vmap":
                branches = _vmap(body, sets, maps or {})
            elif kind == "dnat":
                verdict = "dnat"
                target = f"{body.get('addr', '')}:{body.get('port', '')}"
            elif kind == "redirect":
                verdict, target = "dnat", f":{(body or {}).get('port', '')}"
            elif kind == "limit":
                if (body or {}).get("inv"):  # "limit rate over": holds only for a source that is too fast
                    matches.append(Match("rate_over", (f"{body.get('rate')}/{body.get('per')}",)))
            elif kind == "xt":
                raise ValueError(f"iptables extension {body.get('type')} '{body.get('name')}' (xt)")
            elif kind in IGNORED:
                continue
            else:
                raise ValueError(f"statement {kind}")
        except PartialMatch as exc:
            matches.extend(exc.implied)
            opaque = opaque or str(exc)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            opaque = opaque or str(exc)
            statement_unknown = statement_unknown or statement
    if verdict is None and branches is None and not statement_unknown:
        # only counts, logs or rewrites the source (Docker's `masquerade` on `fib saddr type local`): whatever
        # its matches say, it decides nothing about who gets in
        opaque = None
    if branches is None or opaque:
        return [Rule(tuple(matches), verdict, target, text, opaque, handle)]
    return [Rule((*matches, *extra), v, t, text, None, handle) for extra, v, t in branches]


def parse_rule(exprs: list[dict[str, Any]], sets: dict[str, tuple[str, ...]], text: str, handle: int | None) -> Rule:
    """One rule's expression list (a verdict map left opaque: :func:`parse_rules` expands it)."""
    rules = parse_rules(exprs, sets, text, handle)
    return rules[0] if len(rules) == 1 else Rule((), None, None, text, "verdict map", handle)


def rule_texts(listing: str) -> dict[tuple[str, str, str, int], str]:
    """(family, table, chain, handle) -> rule text, from ``nft -a list ruleset``."""
    return _listing(listing)[0]


def chain_devices(listing: str) -> dict[tuple[str, str, str], tuple[str, ...]]:
    """(family, table, chain) -> devices of each ingress chain, from ``nft list ruleset``: ``type filter hook
    ingress device "eth0" priority 0;`` or ``devices = { eth0, eth1 }``."""
    return _listing(listing)[1]


def _listing(listing: str) -> tuple[dict[tuple[str, str, str, int], str], dict[tuple[str, str, str], tuple[str, ...]]]:
    out: dict[tuple[str, str, str, int], str] = {}
    devices: dict[tuple[str, str, str], tuple[str, ...]] = {}
    table = ("", "")
    chain = ""
    for raw in listing.splitlines():
        line = raw.strip()
        m = re.match(r"^table (\S+) (\S+) \{", line)
        if m:
            table = (m.group(1), m.group(2))
            continue
        m = re.match(r"^chain (\S+) \{", line)
        if m:
            chain = m.group(1)
            continue
        m = re.match(r'^type \S+ hook ingress (?:device "?([^";\s]+)"?|devices = \{([^}]*)\})', line)
        if m and chain:
            names = [m.group(1)] if m.group(1) else [d.strip().strip('"') for d in m.group(2).split(",")]
            devices[(table[0], table[1], chain)] = tuple(n for n in names if n)
            continue
        m = re.match(r"^(.*?)\s+# handle (\d+)$", line)
        if m and chain and not line.startswith(("type ", "set ", "map ")):
            out[(table[0], table[1], chain, int(m.group(2)))] = m.group(1)
    return out, devices


def parse_ruleset(data: str, listing: str = "", source: str = "nftables") -> Ruleset:
    """The whole ``nft -j list ruleset`` document."""
    try:
        doc = json.loads(data)
        items = doc["nftables"]
    except (ValueError, KeyError, TypeError) as exc:
        raise RulesetError(f"nft -j output is not an nftables JSON document: {exc}") from exc
    texts, devices = _listing(listing)
    sets: dict[tuple[str, str, str], tuple[str, ...]] = {}
    maps: dict[tuple[str, str, str], list[Any]] = {}
    chains: dict[tuple[str, str, str], dict[str, Any]] = {}
    rules: dict[tuple[str, str, str], list[Rule]] = {}
    for item in items:
        if "set" in item:
            s = item["set"]
            try:
                elems = tuple(_scalar(s.get("elem", []), {}))
            except ValueError:
                elems = ()
            sets[(s["family"], s["table"], s["name"])] = elems
        elif "map" in item and isinstance(item["map"], dict) and item["map"].get("map") == "verdict":
            m = item["map"]
            maps[(m["family"], m["table"], m["name"])] = list(m.get("elem", []))
        elif "chain" in item:
            c = item["chain"]
            chains[(c["family"], c["table"], c["name"])] = c
    for item in items:
        if "rule" not in item:
            continue
        r = item["rule"]
        key = (r["family"], r["table"], r["chain"])
        table_sets = {n: v for (f, t, n), v in sets.items() if (f, t) == key[:2]}
        table_maps = {n: v for (f, t, n), v in maps.items() if (f, t) == key[:2]}
        text = texts.get((*key, r.get("handle", -1)), "") or _describe(r.get("expr", []))
        rules.setdefault(key, []).extend(parse_rules(r.get("expr", []), table_sets, text, r.get("handle"), table_maps))
    out: dict[tuple[str, str, str], Chain] = {}
    for key, c in chains.items():
        xt = any(r.opaque and "(xt)" in r.opaque for r in rules.get(key, []))
        out[key] = Chain(c["family"], c["table"], c["name"], tuple(rules.get(key, [])), c.get("hook"),
                         _prio(c.get("prio", 0)), c.get("policy", "accept"), c.get("type", "filter"),
                         "iptables-nft" if xt else source, _devices(c, devices.get(key)))
    return Ruleset(out, sets, (source,))


def _devices(chain: dict[str, Any], listed: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """An ingress chain's devices: from the JSON where nft puts them there (newer versions), else the listing."""
    if chain.get("hook") != "ingress":
        return None
    dev = chain.get("dev")
    if isinstance(dev, str):
        return (dev,)
    if isinstance(dev, list) and all(isinstance(d, str) for d in dev):
        return tuple(dev)
    return listed


def _prio(value: Any) -> int:
    if isinstance(value, int):
        return value
    names = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
    return names.get(str(value), 0)


def _describe(exprs: list[dict[str, Any]]) -> str:
    return json.dumps(exprs, separators=(",", ":"))[:300]
