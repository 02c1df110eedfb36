"""Virtual patches (data/waf/virtual-patches/): for every patch, requests of its exploit's shape that its rules
must refuse, and ordinary requests to the same application that must pass, all through the real engine
with the whole ruleset a site gets (CRS 3.3.4, hostguard's own rules, every patch enabled). Asserts which
rule refused, not only that something did. The loader's refusals of malformed patch files are below."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from hostguard.waf.engine import Engine, Request
from hostguard.waf.ruleset import WafSettings, assemble, virtual_patch_rules
from hostguard.waf.vpatch import RULE_IDS, PatchError, catalogue, check_patch_rules, load_directory, parse_patch
from tests.waf.test_engine import _need_library

BROWSER = [("Host", "app.example.test"), ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"),
           ("Accept", "text/html,application/xhtml+xml,*/*;q=0.8"), ("Accept-Language", "en-GB,en;q=0.7")]


def get(target: str, *headers: tuple[str, str]) -> Request:
    return Request("GET", target, [*BROWSER, *headers])


def body(method: str, target: str, content_type: str, data: bytes, *headers: tuple[str, str]) -> Request:
    return Request(method, target, [*BROWSER, ("Content-Type", content_type), ("Content-Length", str(len(data))),
                                    *headers], data)


def form(target: str, fields: list[tuple[str, str]] | str, method: str = "POST") -> Request:
    data = fields if isinstance(fields, str) else urlencode(fields)
    return body(method, target, "application/x-www-form-urlencoded", data.encode())


def api(target: str, value: object, method: str = "POST") -> Request:
    return body(method, target, "application/json", json.dumps(value).encode())


def cookie(target: str, **values: str) -> Request:
    return get(target, ("Cookie", "; ".join(f"{k}={v}" for k, v in values.items())))


def b64(text: str) -> str:
    return quote(base64.b64encode(text.encode()).decode())


EVAL_STDIN = "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php"
IGNITION = "/_ignition/execute-solution"
OPTIONAL_SOLUTION = "Facade\\Ignition\\Solutions\\MakeViewVariableOptionalSolution"
SERIALIZED_RCE = '{"username":"_$$ND_FUNC$$_function(){require(\'child_process\').exec(\'id\')}()"}'

# (patch id, rule id, the exploit's request)
HITS = [
    ("phpunit-eval-stdin", 21010, body("POST", EVAL_STDIN, "application/x-www-form-urlencoded",
                                       b"<?php echo md5('hostguard'); ?>")),
    ("phpunit-eval-stdin", 21010, body("POST", EVAL_STDIN, "text/plain", b"<?=`id`?>")),
    ("phpunit-eval-stdin", 21010, get(EVAL_STDIN)),                                      # a scanner's probe
    ("phpunit-eval-stdin", 21010, get("/lib/vendor/phpunit/phpunit/Util/PHP/eval-stdin.php")),   # 4.8's layout
    ("phpunit-eval-stdin", 21010, get("/Vendor/PHPUnit/phpunit/src/Util/PHP/./EVAL-STDIN.PHP/x")),
    ("drupal-form-api-rce", 21020, form("/user/register?element_parents=account/mail/%23value&ajax_form=1"
                                        "&_wrapper_format=drupal_ajax",
                                        "form_id=user_register_form&_drupal_ajax=1&mail%5B%23post_render%5D%5B%5D=exec"
                                        "&mail%5B%23type%5D=markup&mail%5B%23markup%5D=id")),
    ("drupal-form-api-rce", 21020, form("/?q=user/password&name%5B%23post_render%5D%5B%5D=passthru"
                                        "&name%5B%23type%5D=markup&name%5B%23markup%5D=id",
                                        [("form_id", "user_pass"), ("_triggering_element_name", "name")])),
    ("drupal-form-api-rce", 21020, form("/user/register", "form_id=user_register_form&timezone[a][#lazy_builder][]="
                                                          "system&timezone[a][#lazy_builder][][]=id")),
    ("drupal-form-api-rce", 21021, form("/user/register?element_parents=account/mail/%23value&ajax_form=1"
                                        "&_wrapper_format=drupal_ajax",
                                        [("form_id", "user_register_form"), ("_drupal_ajax", "1")])),
    ("ignition-solution-rce", 21030, api(IGNITION, {"solution": OPTIONAL_SOLUTION, "parameters": {
        "variableName": "username", "viewFile": "php://filter/write=convert.quoted-printable-decode|"
                                                "convert.iconv.utf-16le.utf-8|convert.base64-decode/resource="
                                                "../storage/logs/laravel.log"}})),
    ("ignition-solution-rce", 21030, api(IGNITION, {"solution": OPTIONAL_SOLUTION, "parameters": {
        "variableName": "username", "viewFile": "phar://../storage/logs/laravel.log/test.txt"}})),
    # Laravel reads any */json body as JSON; so does hostguard's base config now (text/json, application/x-json)
    ("ignition-solution-rce", 21030, body("POST", IGNITION, "text/json", json.dumps(
        {"solution": OPTIONAL_SOLUTION, "parameters": {"variableName": "x", "viewFile": "phar://x/y.txt"}}).encode())),
    ("ignition-solution-rce", 21030, form(IGNITION, [("solution", OPTIONAL_SOLUTION),
                                                     ("parameters[variableName]", "x"),
                                                     ("parameters[viewFile]", "Data:text/plain,hello")])),
    ("nextjs-middleware-bypass", 21040, get("/dashboard", ("x-middleware-subrequest", "middleware"))),
    ("nextjs-middleware-bypass", 21040, get("/admin/users", ("X-Middleware-Subrequest",
                                                             ":".join(["src/middleware"] * 5)))),
    ("nextjs-middleware-bypass", 21040, body("PUT", "/api/admin/settings", "application/json", b'{"theme": "dark"}',
                                             ("x-middleware-subrequest", "pages/_middleware"))),
    ("node-serialize-iife", 21050, cookie("/profile", profile=b64(SERIALIZED_RCE))),
    # the marker written with JSON escapes: node-serialize JSON.parses before it looks for it
    ("node-serialize-iife", 21050, cookie("/profile", profile=b64(
        '{"rce":"_\\u0024\\u0024ND_FUNC\\u0024\\u0024_function(){require(\\"child_process\\").exec(\\"id\\")}()"}'))),
    ("node-serialize-iife", 21050, api("/api/preferences", {"data": "_$$ND_FUNC$$_function(){return 1}()"})),
    ("node-serialize-iife", 21050, get("/import?p=" + quote("_$$ND_FUNC$$_require('child_process').execSync('id')"))),
    ("aiohttp-static-traversal", 21060, get("/static/../../../etc/passwd")),
    ("aiohttp-static-traversal", 21060, get("/static/%2e%2e/%2e%2e/app/settings.py")),
    ("aiohttp-static-traversal", 21060, get("/static/..%2f..%2f..%2fetc%2fshadow")),
    ("aiohttp-static-traversal", 21060, get("/static/%2E%2E/")),
    ("wordpress-rest-content-injection", 21070, api("/wp-json/wp/v2/posts/1234?id=1234abc",
                                                    {"title": "Defaced", "content": "hello"})),
    ("wordpress-rest-content-injection", 21070, api("/index.php?rest_route=/wp/v2/posts/1234&id=1234abc",
                                                    {"title": "Defaced"})),
    ("wordpress-rest-content-injection", 21070, api("/wp-json/wp/v2/pages/7", {"id": "7x", "content": "Defaced"})),
]

# (patch id, ordinary request to the same application, why it is ordinary)
MISSES = [
    ("phpunit-eval-stdin", get("/"), "the application's home page"),
    ("phpunit-eval-stdin", form("/login", [("email", "alice@example.test"), ("password", "correct horse")]),
     "a login form"),
    ("phpunit-eval-stdin", get("/blog/how-eval-stdin-php-works?utm_source=feed"), "a page whose slug names the file"),
    ("phpunit-eval-stdin", get("/docs/util/php/eval-stdin.php.txt"), "a text file named after it, not the script"),
    ("drupal-form-api-rce", form("/user/login", [("name", "alice"), ("pass", "correct horse"),
                                                 ("form_id", "user_login_form"), ("op", "Log in")]), "Drupal's login"),
    ("drupal-form-api-rce", form("/node/add/article", [("title", "Release notes #42"),
                                                       ("body[0][value]", "Colours #ff8800 and tags #drupal"),
                                                       ("field_tags[target_id]", "#news, #php"),
                                                       ("form_id", "node_article_form"), ("op", "Save")]),
     "'#' in values (titles, colours, tags): only names are Form API properties"),
    ("drupal-form-api-rce", form("/file/ajax/field_image/widget/0/form-x1?element_parents=field_image/widget/0"
                                 "&ajax_form=1&_wrapper_format=drupal_ajax",
                                 [("form_id", "node_article_form"), ("_drupal_ajax", "1"),
                                  ("field_image[0][fids]", "12")]), "the image widget's own AJAX upload"),
    ("drupal-form-api-rce", get("/search/node?keys=%23hashtag"), "a search for a hashtag"),
    ("ignition-solution-rce", api(IGNITION, {"solution": OPTIONAL_SOLUTION, "parameters": {
        "variableName": "username", "viewFile": "/var/www/app/resources/views/welcome.blade.php"}}),
     "the debug page's own request: a view's absolute path"),
    ("ignition-solution-rce", api("/settings", {"viewFile": "https://cdn.example.test/theme.css"}),
     "a URL in a field of the same name on another route"),
    ("ignition-solution-rce", api("/api/login", {"email": "alice@example.test", "password": "correct horse"}),
     "the application's JSON login"),
    ("nextjs-middleware-bypass", get("/dashboard", ("Cookie", "session=4f1c2a9e8b7d"), ("x-middleware-prefetch", "1")),
     "a prefetch with Next.js's own client headers"),
    ("nextjs-middleware-bypass", get("/dashboard?_rsc=1x2y3", ("RSC", "1"), ("Next-Router-State-Tree", "%5B%22%22%5D"),
                                     ("x-nextjs-data", "1")), "a client-side navigation"),
    ("nextjs-middleware-bypass", get("/_next/static/chunks/main-app.js"), "a static chunk"),
    ("node-serialize-iife", cookie("/profile", profile=b64('{"username":"alice","country":"NL"}')),
     "a serialized profile without functions"),
    ("node-serialize-iife", api("/api/preferences", {"note": "costs $$ 5", "fn": "ND_FUNC"}),
     "dollars and the marker's word without its exact shape"),
    ("aiohttp-static-traversal", get("/static/css/site.css?v=1.2"), "a static file"),
    ("aiohttp-static-traversal", get("/static/img/logo..v2.png"), "two dots inside a name"),
    ("aiohttp-static-traversal", get("/api/releases/v1..v2/diff"), "a range written with two dots"),
    ("wordpress-rest-content-injection", get("/wp-json/wp/v2/posts/1234"), "reading a post"),
    ("wordpress-rest-content-injection", api("/wp-json/wp/v2/posts/1234?id=1234",
                                             {"title": "Edited", "content": "Hello again"}),
     "an edit with a numeric id"),
    ("wordpress-rest-content-injection", get("/wp-json/wp/v2/posts?per_page=10&page=2&orderby=date"),
     "the post list"),
    ("wordpress-rest-content-injection", get("/wp-json/wp/v2/users?id=me"), "a non-numeric id on another route"),
]


@pytest.fixture(scope="module")
def waf() -> Engine:
    _need_library()
    return Engine(text=assemble(WafSettings(virtual_patches=tuple(catalogue()))))


@pytest.mark.parametrize(("patch", "rule", "request_"), HITS, ids=[f"{p}-{r}-{i}" for i, (p, r, _) in enumerate(HITS)])
def test_the_exploit_is_refused_by_its_patch(waf: Engine, patch: str, rule: int, request_: Request) -> None:
    verdict = waf.inspect(request_)
    assert verdict.disruptive and verdict.status == 403, verdict.rule_ids
    refusing = [m for m in verdict.matches if m.id in RULE_IDS]
    assert {m.id for m in refusing} == {rule}, verdict.rule_ids   # one rule (multiMatch may say it more than once)
    assert any(f"hostguard/virtual-patch/{patch}" in m.tags for m in refusing)
    assert all(catalogue()[patch].cves[0] in m.msg for m in refusing)


@pytest.mark.parametrize(("patch", "request_", "why"), MISSES, ids=[f"{p}-{i}" for i, (p, _, _) in enumerate(MISSES)])
def test_ordinary_traffic_to_the_application_passes(waf: Engine, patch: str, request_: Request, why: str) -> None:
    verdict = waf.inspect(request_)
    assert not verdict.disruptive, (why, verdict.rule_ids)
    assert not [i for i in verdict.rule_ids if i in RULE_IDS], why


def test_every_patch_and_rule_has_hits_and_every_patch_misses() -> None:
    patches = catalogue()
    assert len(patches) >= 6
    rules = {r for p in patches.values() for r in p.rule_ids}
    assert rules == {r for _, r, _ in HITS}, "every rule of every patch needs an exploit request in HITS"
    assert {p for p, _, _ in HITS} == set(patches) == {p for p, _, _ in MISSES}
    for patch, rule, _ in HITS:
        assert rule in patches[patch].rule_ids, (patch, rule)


def test_every_patch_loads_in_the_engine_alone() -> None:
    _need_library()
    assert check_patch_rules(catalogue().values()) == []


def test_crs_alone_lets_these_exploits_through() -> None:
    """What the patches add: exploit shapes that the Core Rule Set at paranoia level 1 and hostguard's own rules
    do not refuse, and which the application at a vulnerable version would act on."""
    _need_library()
    with Engine(text=assemble(WafSettings())) as plain:
        passed = [(p, r.body) for p, _, r in HITS if not plain.inspect(r).disruptive]
    every = {"drupal-form-api-rce", "nextjs-middleware-bypass", "wordpress-rest-content-injection"}
    assert all((p, r.body) in passed for p, _, r in HITS if p in every), passed
    # code in a text/plain body: CRS reads no ARGS there, but hostguard reads such a body as arguments (20911)
    assert ("phpunit-eval-stdin", b"<?=`id`?>") not in passed


def test_a_disabled_patch_is_not_loaded_and_an_unknown_one_is_refused() -> None:
    _need_library()
    [drupal] = [r for p, _, r in HITS if p == "drupal-form-api-rce"][:1]
    with Engine(text=assemble(WafSettings(virtual_patches=("phpunit-eval-stdin",)))) as one:
        assert 21020 not in one.inspect(drupal).rule_ids
    with pytest.raises(ValueError, match="no virtual patch 'drupal-rce'.*known: aiohttp-static-traversal"):
        WafSettings(virtual_patches=("drupal-rce",))
    assert virtual_patch_rules(("phpunit-eval-stdin", "phpunit-eval-stdin")).count("id:21010") == 1


def test_the_patches_deny_even_when_the_anomaly_threshold_is_raised() -> None:
    """The decision the patches make on their own: an owner who raised the inbound threshold (or excluded a CRS
    rule) does not lose them."""
    _need_library()
    [(_, _, exploit)] = [h for h in HITS if h[0] == "nextjs-middleware-bypass"][:1]
    with Engine(text=assemble(WafSettings(inbound_threshold=1000, virtual_patches=("nextjs-middleware-bypass",)))) as w:
        verdict = w.inspect(exploit)
    assert verdict.disruptive and 21040 in verdict.rule_ids
    with Engine(text=assemble(WafSettings(mode="detect", virtual_patches=("nextjs-middleware-bypass",)))) as w:
        verdict = w.inspect(exploit)
    assert not verdict.disruptive and 21040 in verdict.rule_ids   # detection only: recorded, let through


# -- the loader ----------------------------------------------------------------------------------------------

GOOD = '''
id = "demo-patch"
summary = "A demo"
cves = ["CVE-2099-0001"]
severity = "high"
exploit = "a demo request"
rules = \'\'\'
SecRule REQUEST_FILENAME "@rx /demo\\z" "id:21990,phase:1,deny,log,msg:'demo',tag:'hostguard/virtual-patch/demo-patch'"
\'\'\'

[[affected]]
package = { ecosystem = "PyPI", name = "demo" }
ranges = [{ type = "ECOSYSTEM", events = [{ introduced = "1.0" }, { fixed = "1.2" }] }]
'''


def _bad(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new)


BAD = [
    (_bad('severity = "high"', 'severity = "high"\ncolour = "red"'), "unknown key 'colour'"),
    (_bad('exploit = "a demo request"\n', ""), "missing exploit"),
    (_bad('id = "demo-patch"', 'id = "other-patch"'), "must be the file's name"),
    (_bad('cves = ["CVE-2099-0001"]', 'cves = ["2099-1"]'), "'2099-1' is not an id"),
    (_bad('severity = "high"', 'severity = "urgent"'), "one of critical"),
    (_bad('{ fixed = "1.2" }', '{ fix = "1.2" }'), "unknown key 'fix'"),
    (_bad('{ introduced = "1.0" }, { fixed = "1.2" }', '{ fixed = "1.2" }, { introduced = "1.0" }'), "alternate"),
    (_bad('{ introduced = "1.0" }, { fixed = "1.2" }', '{ introduced = "1.3" }, { fixed = "1.2" }'),
     "1.2 is not above 1.3"),
    (_bad('{ fixed = "1.2" }', '{ fixed = "not a version!" }'), "PyPI cannot read"),
    (_bad('type = "ECOSYSTEM"', 'type = "GIT"'), "ECOSYSTEM or SEMVER"),
    (_bad('ecosystem = "PyPI"', 'ecosystem = "WordPress"'), "no version order is known for 'WordPress'"),
    (_bad('ranges = [{ type = "ECOSYSTEM", events = [{ introduced = "1.0" }, { fixed = "1.2" }] }]', ""),
     "needs ranges or versions"),
    (_bad("id:21990", "id:20990"), "outside the virtual patches' range 21000-21999"),
    (_bad("phase:1,deny,log", "phase:1,pass,log"), "denies"),
    (_bad("tag:'hostguard/virtual-patch/demo-patch'", "tag:'demo'"), "needs tag:'hostguard/virtual-patch/demo-patch'"),
    (_bad('SecRule REQUEST_FILENAME', 'SecRuleEngine Off\nSecRule REQUEST_FILENAME'), "only SecRule directives"),
    (_bad("id:21990,", "id:21990,id:21991,"), "exactly one id"),
    (_bad("tag:'hostguard/virtual-patch/demo-patch'\"", "tag:'hostguard/virtual-patch/demo-patch'\"\n"
          "SecRule ARGS \"@rx x\" \"id:21990,phase:2,deny,msg:'x',tag:'hostguard/virtual-patch/demo-patch'\""),
     "id 21990 is used twice"),
    ("id = ", "not TOML"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m for _, m in BAD])
def test_a_malformed_patch_is_refused_with_the_key(text: str, message: str) -> None:
    with pytest.raises(PatchError, match="demo-patch.toml") as caught:
        parse_patch(text, "virtual patch demo-patch.toml", "demo-patch")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_good_patch_loads_and_applies_through_the_matcher() -> None:
    patch = parse_patch(GOOD, "demo-patch.toml", "demo-patch")
    assert patch.rule_ids == (21990,) and patch.names == {"CVE-2099-0001"}
    assert [m.fix for m in patch.applies("PyPI", "Demo", "1.1").matches] == ["1.2"]   # PEP 503 name, PEP 440 order
    assert not patch.applies("PyPI", "demo", "1.2").matches
    assert not patch.applies("PyPI", "demo", "0.9").matches
    assert not patch.applies("npm", "demo", "1.1").matches


def test_a_rule_id_of_two_patches_and_a_stray_file_are_refused(tmp_path: Path) -> None:
    (tmp_path / "demo-patch.toml").write_text(GOOD)
    other = GOOD.replace("demo-patch", "other-patch")
    (tmp_path / "other-patch.toml").write_text(other)
    with pytest.raises(PatchError, match="id 21990 is already used by virtual patch demo-patch"):
        load_directory(tmp_path)
    (tmp_path / "other-patch.toml").unlink()
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(PatchError, match="notes.txt: not a virtual patch"):
        load_directory(tmp_path)
    (tmp_path / "notes.txt").unlink()
    assert list(load_directory(tmp_path)) == ["demo-patch"]


def _places(obj: object, at: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Every key path in a parsed TOML document (table keys and list indexes)."""
    inner: list[tuple[object, ...]] = []
    if isinstance(obj, dict):
        inner = [p for k, v in obj.items() for p in _places(v, (*at, k))]
    elif isinstance(obj, list):
        inner = [p for i, v in enumerate(obj) for p in _places(v, (*at, i))]
    return [at, *inner]


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml, value)) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


@pytest.mark.parametrize("value", [1, 1.5, True, "", "x", "0", [], [1], ["x"], {}, {"a": 1}, [{}],
                                   [{"introduced": 1}], [{"introduced": "0", "fixed": "1"}]], ids=repr)
def test_any_value_anywhere_is_a_patch_or_one_line_refusal(value: object) -> None:
    import copy
    import tomllib

    data = tomllib.loads(GOOD)
    for place in _places(data)[1:]:
        changed = copy.deepcopy(data)
        holder: Any = changed
        for key in place[:-1]:
            holder = holder[key]
        holder[place[-1]] = value
        text = "\n".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in changed.items())
        try:
            parse_patch(text, "virtual patch demo-patch.toml", "demo-patch")
        except PatchError as exc:
            assert "\n" not in str(exc) and str(exc).startswith("virtual patch demo-patch.toml"), (place, exc)
