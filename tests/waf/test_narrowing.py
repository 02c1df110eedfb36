"""CRS rules narrowed (hostguard.waf.narrowing, data/waf/narrowings.toml): each narrowed rule lets the honest
shape through that plain CRS refuses, and still refuses the attacks the CRS rule is for; the rule is read from
the installed CRS, and a CRS that has it in another form (or not at all) keeps its own rule."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.waf.documents import argument_pattern
from hostguard.waf.engine import Engine, Request
from hostguard.waf.narrowing import Narrowing, load, narrowed, narrowed_rules, parse
from hostguard.waf.ruleset import CRS_RULES, WafSettings, assemble, crs_updates
from tests.waf.test_engine import _need_library

HEADERS = [("Host", "shop.example.test"), ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")]
PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAQAAAACCAIAAADwyuo0AAAAC0lEQVR4nGNgwAUAABoAAbw84EEAAAAASUV"
       "ORK5CYII=")
JPEG = "data:image/jpeg;base64,/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAAMCAgICAgMCAgIDAwMDBAYEBAQEBAgGBgUGCQgKCgkICQkKDA8M"




def _form(target: str, **fields: str) -> Request:
    body = "&".join(f"{k}={quote(v, safe='')}" for k, v in fields.items()).encode()
    return Request("POST", target, [*HEADERS, ("Content-Type", "application/x-www-form-urlencoded"),
                                    ("Content-Length", str(len(body)))], body)


def _json(target: str, value: object) -> Request:
    body = json.dumps(value).encode()
    return Request("POST", target, [*HEADERS, ("Content-Type", "application/json"),
                                    ("Content-Length", str(len(body)))], body)


def _multipart(part_headers: str, content: bytes = b"hello") -> Request:
    body = (b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n' + part_headers.encode() +
            b"Content-Type: text/plain\r\n\r\n" + content + b"\r\n--XyZ--\r\n")
    return Request("POST", "/upload", [*HEADERS, ("Content-Type", "multipart/form-data; boundary=XyZ"),
                                       ("Content-Length", str(len(body)))], body)


# (CRS rule, an honest request plain CRS refuses with it, an attack of its kind still refused by the narrowed rule)
CASES = [
    (941130, _form("/contracts/sign", signer="Ann Lee", signature=PNG),
     _form("/profile", bio="<a xlink:href=javascript:alert(1)>x</a>")),
    (941170, _json("/api/avatar", {"image": JPEG}),
     _form("/profile", site="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==")),
    (941170, _form("/contracts/sign", signature=PNG),
     _form("/profile", avatar="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+")),
    (933160, Request("GET", "/blog/why-i-stopped-using-eval()-in-javascript", HEADERS),
     Request("GET", "/?code=" + quote("eval($_GET['c']);"), HEADERS)),
    (933160, _form("/ask", title="What does system() return when the shell is missing?"),
     _form("/ask", q="system('id');")),
    (934100, _json("/api/events", {"u": "https://example.test/blog/why-i-stopped-using-eval()-in-javascript"}),
     _json("/api/events", {"u": "eval(require('child_process').execSync('id').toString())"})),
    (934100, _json("/api/events", {"u": "see eval() and new Function() in the docs"}),
     _json("/api/events", {"u": "function(){ return this.constructor.constructor('return process')() }()"})),
    (922120, _multipart("Content-Transfer-Encoding: binary\r\n"),
     _multipart("Content-Transfer-Encoding: base64\r\n", base64.b64encode(b"<?php system($_GET['c']); ?>"))),
    (922120, _multipart("Content-Transfer-Encoding: 8bit\r\n"),
     _multipart("Content-Transfer-Encoding: quoted-printable\r\n", b"=3C=3Fphp system($_GET['c']); ?=3E")),
]


@pytest.mark.parametrize(("rule", "honest", "attack"), CASES, ids=[f"{r}-{i}" for i, (r, _, _) in enumerate(CASES)])
def test_a_narrowed_rule_lets_its_honest_shape_through_and_still_refuses_attacks(
        waf: Engine, plain: Engine, rule: int, honest: Request, attack: Request) -> None:
    before = plain.inspect(honest)
    assert rule in before.rule_ids and before.disruptive, before.rule_ids
    after = waf.inspect(honest)
    twin = next(n.id for n in load() if n.rule == rule)
    assert not after.disruptive and rule not in after.rule_ids and twin not in after.rule_ids, after.rule_ids
    verdict = waf.inspect(attack)
    assert verdict.disruptive, verdict.rule_ids
    assert rule not in verdict.rule_ids   # CRS's own rule is gone; its twin or another rule refused


def test_the_twin_refuses_alone_what_the_crs_rule_did(waf: Engine) -> None:
    # the narrowed rule itself scores an attack of its kind (not only some other rule)
    verdict = waf.inspect(_form("/profile", site="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="))
    assert 20951 in verdict.rule_ids and 941170 not in verdict.rule_ids
    verdict = waf.inspect(_multipart("Content-Transfer-Encoding: base64\r\n", b"aGVsbG8="))
    assert 20954 in verdict.rule_ids and verdict.disruptive


def test_every_shipped_narrowing_is_made_from_the_installed_crs() -> None:
    if not Path(CRS_RULES).is_dir():
        pytest.skip(reason=f"no CRS in {CRS_RULES} (apt-get install modsecurity-crs)")
    made = narrowed(CRS_RULES)
    assert [n.rule for n, _ in made] == [n.rule for n in load()]
    pattern = argument_pattern()
    for n, rule in made:
        assert rule.startswith("SecRule ") and f"id:{n.id}," in rule and "chain" in rule
        assert f"tag:'hostguard/narrowed/{n.rule}'" in rule
        if n.documents:   # the twin reads the fields people write in, and asks their own values
            assert rule.startswith(f"SecRule ARGS:/{pattern}/ ") and f'SecRule ARGS:/{pattern}/ "!@rx ' in rule
        else:
            assert n.unless is not None and f'SecRule MATCHED_VARS "!@rx {n.unless}"' in rule
    updates = crs_updates(WafSettings())
    by_value = " ".join(str(n.rule) for n in load() if not n.documents)
    assert re.search(r"(?m)^SecRuleRemoveById " + by_value + "$", updates)
    for n in load():
        if n.documents:   # kept (CRS's exclusion packages name it), without the fields people write in
            assert f'SecRuleUpdateTargetById {n.rule} "!ARGS:/{pattern}/"' in updates
            assert f"SecRuleRemoveById {n.rule}" not in updates


def test_an_owner_removing_the_crs_rule_removes_its_twin_too() -> None:
    _need_library()
    text = assemble(WafSettings(remove_ids=(941130, 941170)))
    assert "id:20950," not in text and "id:20951," not in text
    with Engine(text=text) as engine:
        verdict = engine.inspect(_form("/profile", bio="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="))
        assert not {941130, 941170, 20950, 20951} & set(verdict.rule_ids), verdict.rule_ids


SIMPLE = ('SecRule ARGS "@rx (?i)bad\\"word" \\\n    "id:{id},\\\n    phase:{phase},\\\n    block,\\\n    capture,\\\n'
          "    t:none,t:lowercase,\\\n    msg:'A bad word',\\\n    tag:'attack-generic',\\\n"
          "    severity:'{severity}',\\\n    setvar:'tx.anomaly_score_pl1=+%{{tx.critical_anomaly_score}}'\"\n")


def _crs(tmp_path: Path, text: str) -> str:
    (tmp_path / "REQUEST-999-TEST.conf").write_text("# a CRS file of a test\n\n" + text, encoding="utf-8")
    return str(tmp_path)


NARROWING = Narrowing(990001, 20990, "REQUEST-999-TEST.conf", why="a good word", unless=r"\Agood\z")


def test_a_simple_rule_is_narrowed_with_its_own_variables_operator_and_transformations(tmp_path: Path) -> None:
    made = narrowed(_crs(tmp_path, SIMPLE.format(id=990001, phase=2, severity="CRITICAL")), narrowings=[NARROWING])
    assert len(made) == 1
    rule = made[0][1]
    assert rule.startswith('SecRule ARGS "@rx (?i)bad\\"word"') and "t:none,t:lowercase" in rule
    assert "msg:'A bad word (narrowed by hostguard)'" in rule and "tag:'attack-generic'" in rule
    assert 'SecRule MATCHED_VARS "!@rx \\Agood\\z"' in rule
    assert narrowed_rules(made).startswith("# CRS 990001, except a good word\n")


@pytest.mark.parametrize(("text", "why"), [
    (SIMPLE.format(id=990001, phase=1, severity="CRITICAL"), "phase 1"),
    (SIMPLE.format(id=990001, phase=2, severity="WARNING"), "not critical"),
    (SIMPLE.format(id=990001, phase=2, severity="CRITICAL").replace("block,", "block,chain,") +
     '    SecRule ARGS "@rx x" "t:none"\n', "a chain"),
    (SIMPLE.format(id=990002, phase=2, severity="CRITICAL"), "another id"),
    ('SecRule ARGS "@rx unclosed \\\n    "id:990001,phase:2,block,severity:\'CRITICAL\'"\n', "not a rule it can read"),
])
def test_a_rule_in_another_form_is_left_as_crs_has_it(tmp_path: Path, text: str, why: str) -> None:
    assert narrowed(_crs(tmp_path, text), narrowings=[NARROWING]) == [], why


def test_a_documents_narrowing_needs_a_rule_that_reads_the_arguments(tmp_path: Path) -> None:
    documents = Narrowing(990001, 20990, "REQUEST-999-TEST.conf", why="a document", documents=True)
    reads_args = SIMPLE.format(id=990001, phase=2, severity="CRITICAL")
    made = narrowed(_crs(tmp_path, reads_args), narrowings=[documents])
    assert len(made) == 1 and made[0][1].startswith("SecRule ARGS:/(?i)^")
    headers_only = reads_args.replace("SecRule ARGS ", "SecRule REQUEST_HEADERS ")
    assert narrowed(_crs(tmp_path, headers_only), narrowings=[documents]) == []


def test_a_missing_crs_file_narrows_nothing(tmp_path: Path) -> None:
    assert narrowed(str(tmp_path / "nowhere"), narrowings=[NARROWING]) == []


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('SecRule ARGS"@rx\\ id:990001,phase:2\'CRITICAL chain\n#x')), max_size=300))
def test_any_file_text_gives_a_rule_or_nothing_never_an_error(text: str) -> None:
    made = narrowed("/crs", read_text=lambda _: text, narrowings=[NARROWING])
    assert len(made) <= 1


@pytest.mark.parametrize(("raw", "message"), [
    ({}, "a list of [[narrowing]]"),
    ({"narrowing": [{"rule": 1, "id": 20950, "file": "REQUEST-941-X.conf", "unless": "a"}]}, "exactly rule, id"),
    ({"narrowing": [{"rule": 1, "id": 30000, "file": "REQUEST-941-X.conf", "unless": "a", "why": "w"}]}, "id in"),
    ({"narrowing": [{"rule": 1, "id": 20950, "file": "../etc/passwd", "unless": "a", "why": "w"}]}, "file is"),
    ({"narrowing": [{"rule": 1, "id": 20950, "file": "REQUEST-941-X.conf", "unless": 'a"', "why": "w"}]},
     "without double quotes"),
    ({"narrowing": [{"rule": 1, "id": 20950, "file": "REQUEST-941-X.conf", "documents": False, "why": "w"}]},
     "documents is true"),
    ({"narrowing": [{"rule": 1, "id": 20950, "file": "REQUEST-941-X.conf", "unless": "a", "documents": True,
                     "why": "w"}]}, "unless or documents"),
    ({"narrowing": [{"rule": 1, "id": 20950, "file": "REQUEST-941-X.conf", "unless": "a", "why": "w"},
                    {"rule": 1, "id": 20951, "file": "REQUEST-941-X.conf", "unless": "b", "why": "w"}]}, "used twice"),
])
def test_a_malformed_table_is_refused(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse(raw)
