"""Learning: narrow exclusions proposed from what honest traffic triggered, and the rules that apply them.

In detection-only mode every request a rule matches is an event and nothing is refused. A rule that keeps
matching one argument on one path, for clients of many different networks over several days, is matching
the application's normal use of that argument (a rich-text body, a search box that takes SQL words), not an
attack: an attacker can send from a few networks, and would have to keep it up for days from many. So an
exclusion is proposed only for one rule x one site x one path x one variable, and only after hits from
``min_networks`` distinct networks (/24 for IPv4, /48 for IPv6) on ``min_days`` distinct days. Nothing is
applied until the owner accepts it (``hostguard waf exclusions --accept ID``).

An accepted exclusion becomes a phase-1 rule loaded before CRS's REQUEST-901 (where ``ctl:`` takes effect):
``ctl:ruleRemoveTargetById=RULE;VARIABLE`` when the request's path is exactly the exclusion's. The rule still
reads every other variable on that path and that variable on every other path.

Never proposed: the blocking evaluation (949110) and hostguard's body-parse rules (10000-10099), whose
removal would remove protection rather than narrow it, and matches whose variable is not a named argument,
cookie or header (a rule matching the whole path cannot be narrowed).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from hostguard.store.waf import PROPOSED, Exclusion, WafEvent

__all__ = ["Offender", "RuleCount", "exclusion_rules", "propose", "repeat_offenders", "rule_counts",
           "server_exclusion_rules", "variable_of"]

# A chained rule names its variable through the chain's MATCHED_VARS (``MATCHED_VARS:ARGS:q``); the exclusion
# is on the variable the chain's first rule reads (``ARGS:q``).
WITHIN = re.compile(r"found within (?:MATCHED_VARS:)?((?:ARGS|ARGS_NAMES|REQUEST_COOKIES|REQUEST_COOKIES_NAMES|"
                    r"REQUEST_HEADERS|FILES|FILES_NAMES):[A-Za-z0-9_.\-\[\]$@]{1,128})(?=[: ]|$)")
NEVER = frozenset({949110, 959100, 980130, 980140})
EXCLUSION_IDS = 11000   # exclusions' own rule ids: 11000-19999
SITE_SAFE = re.compile(r"[A-Za-z0-9._-]{1,64}")
PATH_SAFE = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,500}$")


def variable_of(data: str) -> str | None:
    """The variable a rule match names in its data (``ARGS:comment``), None when it names none."""
    m = WITHIN.search(data)
    return m.group(1) if m else None


@dataclass
class _Seen:
    networks: set[str]
    days: set[str]
    hits: int = 0


def propose(events: Iterable[WafEvent], min_networks: int, min_days: int, when: str) -> list[Exclusion]:
    """Exclusions for (site, rule, path, variable) keys whose matches came from at least ``min_networks``
    networks on at least ``min_days`` days (only events of detection-only mode: what was allowed through)."""
    seen: dict[tuple[str, int, str, str], _Seen] = {}
    for event in events:
        if event.action != "detected":
            continue
        path = event.path.partition("?")[0]
        if not PATH_SAFE.match(path):
            continue
        for rule in event.rules:
            rule_id = int(rule.get("id", 0))
            if rule_id in NEVER or 10000 <= rule_id < 10100:
                continue
            variable = variable_of(str(rule.get("data", "")))
            if variable is None:
                continue
            entry = seen.setdefault((event.site, rule_id, path, variable), _Seen(set(), set()))
            entry.networks.add(event.network)
            entry.days.add(event.day)
            entry.hits += 1
    out = []
    for (site, rule_id, path, variable), s in sorted(seen.items()):
        if len(s.networks) >= min_networks and len(s.days) >= min_days:
            key = hashlib.sha256(f"{site}\0{rule_id}\0{path}\0{variable}".encode()).hexdigest()[:12]
            out.append(Exclusion(key, site, rule_id, path, variable, len(s.networks), len(s.days), s.hits, PROPOSED,
                                 when))
    return out


def exclusion_rules(exclusions: Iterable[Exclusion], site: str) -> list[str]:
    """The phase-1 rules that apply the accepted exclusions of ``site`` (loaded before REQUEST-901)."""
    return [_exclusion_rule(ex, EXCLUSION_IDS + number) for number, ex in enumerate(e for e in exclusions
                                                                                    if e.site == site and _safe(e))]


def server_exclusion_rules(exclusions: Iterable[Exclusion]) -> list[str]:
    """The accepted exclusions of every site, for a web server's one rules file: a server's events name their
    site by the request's host name (``hostguard.waf.auditlog``), so an exclusion learned there applies only to
    requests for that host (``default``: to every request)."""
    rules = []
    for number, ex in enumerate(e for e in exclusions if _safe(e)):
        host = None if ex.site == "default" else ex.site
        rules.append(_exclusion_rule(ex, EXCLUSION_IDS + number, host))
    return rules


def _safe(ex: Exclusion) -> bool:
    # never false for what propose() made; a hand-edited row is not trusted into the rules
    return bool(PATH_SAFE.match(ex.path) and WITHIN.fullmatch(f"found within {ex.variable}")
                and SITE_SAFE.fullmatch(ex.site))


def _exclusion_rule(ex: Exclusion, rule_id: int, host: str | None = None) -> str:
    action = f"ctl:ruleRemoveTargetById={ex.rule_id};{ex.variable}"
    if host is None:
        return (f'SecRule REQUEST_FILENAME "@streq {ex.path}" "id:{rule_id},phase:1,pass,nolog,t:none,{action}"')
    pattern = re.escape(host.lower())   # letters, digits and . _ - (SITE_SAFE): single backslashes only
    return (f'SecRule REQUEST_FILENAME "@streq {ex.path}" "id:{rule_id},phase:1,pass,nolog,t:none,chain,{action}"\n'
            f'    SecRule REQUEST_HEADERS:Host "@rx ^{pattern}(?::[0-9]+)?$" "t:none,t:lowercase"')


@dataclass(frozen=True)
class RuleCount:
    """How often one rule matched: in blocked requests, and in all."""

    rule_id: int
    msg: str
    matched: int
    blocked: int


def rule_counts(events: Iterable[WafEvent]) -> list[RuleCount]:
    """Matches per rule, most first."""
    matched: Counter[int] = Counter()
    blocked: Counter[int] = Counter()
    msgs: dict[int, str] = {}
    for event in events:
        for rule in event.rules:
            rule_id = int(rule.get("id", 0))
            matched[rule_id] += 1
            if event.action == "blocked":
                blocked[rule_id] += 1
            msgs.setdefault(rule_id, str(rule.get("msg", "")))
    return [RuleCount(r, msgs[r], n, blocked[r]) for r, n in matched.most_common()]


@dataclass(frozen=True)
class Offender:
    """A client refused again and again: how many refused requests, by how many rules, first and last time."""

    client: str
    blocked: int
    rules: tuple[int, ...]
    first: str
    last: str


def repeat_offenders(events: Iterable[WafEvent], min_blocked: int, trusted: Iterable[str]) -> list[Offender]:
    """Clients with at least ``min_blocked`` refused requests among ``events`` (the caller picks the window),
    most first, for ``hostguard block`` (issue 9's blocking, which also never blocks the owner). A client in
    ``trusted`` (the CDN and proxy ranges of ``[waf] trusted_proxies``) is never one: blocking it would
    block everyone behind it."""
    import ipaddress

    from hostguard.waf.gate import TrustedProxies

    proxies = TrustedProxies(tuple(trusted))
    seen: dict[str, list[WafEvent]] = {}
    for event in events:
        if event.action == "blocked":
            seen.setdefault(event.client, []).append(event)
    out = []
    for client, hits in seen.items():
        try:
            ipaddress.ip_address(client)
        except ValueError:
            continue
        if len(hits) < min_blocked or proxies.trusts(client):
            continue
        rules = sorted({int(r.get("id", 0)) for e in hits for r in e.rules} - NEVER)
        out.append(Offender(client, len(hits), tuple(rules), min(e.time for e in hits), max(e.time for e in hits)))
    return sorted(out, key=lambda o: (-o.blocked, o.client))
