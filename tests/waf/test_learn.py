"""Learning and events: the JSON Lines log read into state.db (whole lines only, garbage counted, rotation
followed), exclusions proposed only from many networks over several days, and an accepted exclusion applied
by the real engine to exactly its rule, path and variable."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hostguard.store.state import StateStore
from hostguard.store.waf import ACCEPTED, WafStore, network_of
from hostguard.waf.config import WafConfig, WafSite
from hostguard.waf.gate import Gate
from hostguard.waf.learn import exclusion_rules, propose, rule_counts, variable_of
from tests.waf.test_engine import _need_library

XSS_DATA = "Matched Data: <b found within ARGS:content: <b>bold</b> and <i>it</i>"


def _event(n: int, client: str, day: int, action: str = "detected", path: str = "/wp-admin/post.php",
           rules: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"time": f"2026-11-{day:02d}T10:00:{n % 60:02d}.000+00:00", "request_id": f"r{n:06d}", "site": "blog",
            "host": "blog.example.test", "client": client, "method": "POST", "path": path, "action": action,
            "status": 200 if action != "blocked" else 403,
            "rules": rules if rules is not None else [{"id": 941100, "msg": "XSS", "data": XSS_DATA, "tags": []},
                                                      {"id": 949110, "msg": "score", "data": "", "tags": []}]}


def _write(log: Path, events: list[dict[str, Any]], extra: str = "") -> None:
    with log.open("a") as f:
        f.write("".join(json.dumps(e) + "\n" for e in events) + extra)


def test_the_log_is_read_once_whole_lines_only_and_rotation_is_followed(tmp_path: Path) -> None:
    state = StateStore(str(tmp_path / "state"))
    try:
        store = WafStore(state)
        log = tmp_path / "events.jsonl"
        _write(log, [_event(1, "198.51.100.1", 1), _event(2, "198.51.100.2", 1)],
               extra='not json\n["a list"]\n{"time": "x"}\n{"request_id": "half')
        assert (store.ingest(str(log)).added, store.ingest(str(log)).added) == (2, 0)
        with log.open("a") as f:   # the cut line is finished, and one more
            f.write('", "oops": 1}\n' + json.dumps(_event(3, "198.51.100.3", 2)) + "\n")
        result = store.ingest(str(log))
        assert (result.added, result.skipped) == (1, 1)
        log.rename(tmp_path / "events.jsonl.1")   # rotated: a new file at the same path is read from its start
        _write(log, [_event(4, "198.51.100.4", 3)])
        assert store.ingest(str(log)).added == 1
        assert [e.request_id for e in store.events()] == ["r000001", "r000002", "r000003", "r000004"]
        assert store.ingest(str(tmp_path / "missing.jsonl")).added == 0
    finally:
        state.close()


def test_networks_and_variables() -> None:
    assert network_of("198.51.100.77") == "198.51.100.0/24"
    assert network_of("2001:db8:1:2::5") == "2001:db8:1::/48"
    assert variable_of(XSS_DATA) == "ARGS:content"
    assert variable_of("Matched Data: x found within REQUEST_FILENAME: /a") is None
    assert variable_of("no variable") is None


def _events(clients: list[str], days: list[int], **kw: Any) -> list[Any]:
    from hostguard.store.waf import _event as parse

    out = []
    for n, (client, day) in enumerate(((c, d) for d in days for c in clients), 1):
        parsed = parse(_event(n, client, day, **kw))
        assert parsed is not None
        out.append(parsed)
    return out


def test_an_exclusion_needs_many_networks_over_several_days() -> None:
    many = [f"198.51.{i}.7" for i in range(100, 106)]          # 6 networks
    same_net = [f"198.51.100.{i}" for i in range(1, 40)]       # one /24, many addresses
    assert propose(_events(many[:2], [1, 2, 3, 4, 5]), 5, 3, "now") == []      # an attacker from two networks
    assert propose(_events(same_net, [1, 2, 3, 4]), 5, 3, "now") == []         # addresses of one network
    assert propose(_events(many, [1, 2]), 5, 3, "now") == []                   # a burst of two days
    assert propose(_events(many, [1, 2, 3], action="blocked"), 5, 3, "now") == []  # blocked: not let through
    [ex] = propose(_events(many, [1, 2, 3]), 5, 3, "now")
    assert (ex.site, ex.rule_id, ex.path, ex.variable, ex.networks, ex.days) == (
        "blog", 941100, "/wp-admin/post.php", "ARGS:content", 6, 3)   # 949110 never proposed
    path_only = [{"id": 920100, "msg": "x", "data": "Matched Data: x found within REQUEST_FILENAME: /a", "tags": []}]
    assert propose(_events(many, [1, 2, 3], rules=path_only), 5, 3, "now") == []


def test_an_accepted_exclusion_narrows_one_rule_on_one_path_for_one_argument(tmp_path: Path) -> None:
    _need_library()
    many = [f"198.51.{i}.7" for i in range(100, 106)]
    [ex] = propose(_events(many, [1, 2, 3], rules=[{"id": 941160, "msg": "XSS", "data":
                   "Matched Data: <img src=x onerror= found within ARGS:content: <img", "tags": []}]), 5, 3, "now")
    rules = exclusion_rules([ex], "blog")
    assert rules and "ctl:ruleRemoveTargetById=941160;ARGS:content" in rules[0]
    gate = Gate(WafConfig(sites={"blog": WafSite(mode="detect")}), None, site="blog", exclusions=[ex])
    try:
        def ids(path: str, name: str) -> list[int]:
            body = f"{name}=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E".encode()
            return gate.decide("POST", path, [("Host", "blog.example.test"),
                                              ("Content-Type", "application/x-www-form-urlencoded"),
                                              ("Content-Length", str(len(body)))], body, "198.51.100.7").verdict.rule_ids
        assert 941160 not in ids("/wp-admin/post.php", "content")   # excluded: that rule, path and argument
        assert 941160 in ids("/wp-admin/post.php", "title")         # another argument
        assert 941160 in ids("/wp-comments-post.php", "content")    # another path
    finally:
        gate.close()
    assert exclusion_rules([ex], "other-site") == []


def test_a_chained_rule_is_excluded_on_the_variable_its_chain_reads() -> None:
    """hostguard's chained rules (a cheap first test, then the decoded value) name their variable through the
    chain's MATCHED_VARS; the learned exclusion removes the first rule's target, and the rule goes quiet there
    only."""
    _need_library()
    data = "Matched Data: {{ cycler.__init__ found within MATCHED_VARS:ARGS:template: {{ cycler.__init__ }}"
    assert variable_of(data) == "ARGS:template"
    many = [f"198.51.{i}.7" for i in range(100, 106)]
    [ex] = propose(_events(many, [1, 2, 3], rules=[{"id": 20201, "msg": "SSTI", "data": data, "tags": []}]),
                   5, 3, "now")
    gate = Gate(WafConfig(sites={"blog": WafSite(mode="detect")}), None, site="blog", exclusions=[ex])
    try:
        def ids(name: str) -> list[int]:
            body = f"{name}=%7B%7B%20cycler.__init__.__globals__.os.popen('id')%20%7D%7D".encode()
            return gate.decide("POST", "/wp-admin/post.php", [("Host", "blog.example.test"),
                                                             ("Content-Type", "application/x-www-form-urlencoded"),
                                                             ("Content-Length", str(len(body)))],
                               body, "198.51.100.7").verdict.rule_ids
        assert 20201 not in ids("template")
        assert 20201 in ids("subject")
    finally:
        gate.close()


def test_proposals_are_stored_once_and_decided_by_the_owner(tmp_path: Path) -> None:
    many = [f"198.51.{i}.7" for i in range(100, 106)]
    [ex] = propose(_events(many, [1, 2, 3]), 5, 3, "2026-11-04T00:00:00+00:00")
    state = StateStore(str(tmp_path / "state"))
    try:
        store = WafStore(state)
        assert store.save_proposal(ex) and not store.save_proposal(ex)
        assert store.decide(ex.id, ACCEPTED, "2026-11-05T00:00:00+00:00") and not store.decide("nope", ACCEPTED, "x")
        assert [e.state for e in store.exclusions()] == [ACCEPTED] and store.exclusions("proposed") == []
        assert not store.save_proposal(ex)   # decided: never proposed again
    finally:
        state.close()
    assert os.path.exists(tmp_path / "state/state.db")


def test_rule_counts() -> None:
    events = _events(["198.51.100.7"], [1, 2]) + _events(["198.51.101.7"], [3], action="blocked")
    counts = {c.rule_id: (c.matched, c.blocked) for c in rule_counts(events)}
    assert counts == {941100: (3, 1), 949110: (3, 1)}


def test_repeat_offenders_never_include_trusted_proxies() -> None:
    from hostguard.waf.learn import repeat_offenders

    attacker = _events(["203.0.113.50"], [1, 2, 3, 4], action="blocked")
    cdn = _events(["192.0.2.10"], [1, 2, 3, 4, 5], action="blocked")
    once = _events(["198.51.100.9"], [1], action="blocked")
    detected = _events(["198.51.100.20"], [1, 2, 3, 4], action="detected")
    found = repeat_offenders(attacker + cdn + once + detected, 3, ["192.0.2.0/24"])
    assert [(o.client, o.blocked, o.rules) for o in found] == [("203.0.113.50", 4, (941100,))]
    assert [o.client for o in repeat_offenders(attacker + cdn, 3, [])] == ["192.0.2.10", "203.0.113.50"]
