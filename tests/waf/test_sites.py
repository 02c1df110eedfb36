"""Per-site settings: [waf.sites.NAME] tables read from a real config file (unknown keys and bad values named),
a site's effective settings as [waf] overlaid by its table, the same settings for every front end
(:func:`site_settings`), and the real engine of two sites of one config judging the same request differently.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import typing
from pathlib import Path

import pytest

from hostguard.cli import main
from hostguard.config import ConfigError, load
from hostguard.engine.registry import default_registry
from hostguard.report.config_view import render_toml
from hostguard.store.waf import PROPOSED, Exclusion
from hostguard.waf.config import (
    SiteLimits,
    UnknownSite,
    WafConfig,
    WafSite,
    site_config,
    site_names,
    site_settings,
)
from hostguard.waf.gate import Gate
from hostguard.waf.ruleset import WafSettings, assemble
from tests.waf.test_engine import _need_library

SCHEMA = default_registry().schema()
SITES = """
[waf]
paranoia = 2
remove_ids = [920350]
block_status = 403
max_body_bytes = 1048576

[waf.sites.shop]
inbound_threshold = 10

[waf.sites."blog.example.test"]
mode = "detect"
applications = ["wordpress"]
remove_ids = []
block_status = 406
block_message = "Refused ({request_id})"
max_body_bytes = 16777216
body_timeout = 600
websocket_max_message_bytes = 65536
websocket_idle_timeout = 30
"""


def _load(tmp_path: Path, text: str) -> WafConfig:
    path = tmp_path / "hostguard.toml"
    path.write_text(text)
    config: WafConfig = load(str(path), SCHEMA)[WafConfig]
    return config


def test_a_site_is_waf_overlaid_by_its_table(tmp_path: Path) -> None:
    config = _load(tmp_path, SITES)
    assert site_names(config) == ("default", "blog.example.test", "shop")
    blog_settings, blog_limits = site_settings(config, "blog.example.test")
    assert blog_settings == WafSettings(mode="detect", paranoia=2, applications=("wordpress",), remove_ids=(),
                                        body_limit=16_777_216)
    assert blog_limits == SiteLimits(max_body_bytes=16_777_216, body_timeout=600.0, block_status=406,
                                     block_message="Refused ({request_id})", websocket_max_message_bytes=65536,
                                     websocket_idle_timeout=30.0)
    shop_settings, shop_limits = site_settings(config, "shop")   # what the table leaves out is [waf]'s
    assert shop_settings == WafSettings(paranoia=2, inbound_threshold=10, remove_ids=(920350,), body_limit=1_048_576)
    assert shop_limits == SiteLimits(max_body_bytes=1_048_576, body_timeout=120.0, block_status=403,
                                     block_message=WafConfig().block_message, websocket_max_message_bytes=1_048_576,
                                     websocket_idle_timeout=300.0)
    assert site_settings(config, "default")[0] == WafSettings(paranoia=2, remove_ids=(920350,), body_limit=1_048_576)
    assert site_config(config, "shop").sites == {} and site_config(config, "shop").trusted_proxies == ()


def test_an_unknown_site_names_the_known_ones() -> None:
    config = WafConfig(sites={"shop": WafSite()})
    with pytest.raises(UnknownSite, match=r"no site 'shpo' in \[waf.sites\] \(known: default, shop\)"):
        site_settings(config, "shpo")
    with pytest.raises(UnknownSite):
        Gate(config, None, site="shpo")   # before any engine is loaded


@pytest.mark.parametrize(("text", "message"), [
    ("[waf.sites.shop]\nmodee = 'detect'\n", r"unknown setting 'waf.sites.shop.modee' \(known: mode, paranoia"),
    ("[waf.sites.shop]\nparanoia = 5\n", "'waf.sites.shop.paranoia' must be at most 4, not 5"),
    ("[waf.sites.shop]\nparanoia = 'high'\n", "'waf.sites.shop.paranoia' must be int, not str"),
    ("[waf.sites.shop]\nmode = 'blok'\n", "'waf.sites.shop.mode' must be block or detect, not 'blok'"),
    ("[waf.sites.shop]\napplications = ['wordpres']\n", "'waf.sites.shop.applications': no exclusion package "
                                                         "for 'wordpres'"),
    ("[waf.sites.shop]\ncrs_dir = '/tmp'\n", r"unknown setting 'waf.sites.shop.crs_dir'"),   # host-wide only
    ("[waf.sites.shop]\nmax_body_bytes = 1073741824\n", "'waf.max_buffered_bytes' \\(268435456\\) is smaller"),
    ("[waf]\nsites = 3\n", "'waf.sites' must be table, not int"),
    ("[waf.sites]\nshop = 'detect'\n", "'waf.sites.shop' must be table, not str"),
    ("[waf.sites.default]\nmode = 'detect'\n", "'waf.sites.default': a site name is"),
    ("[waf.sites.'a b']\nmode = 'detect'\n", "'waf.sites.a b': a site name is"),
    ("[waf]\nmode = 'blok'\n", "'waf.mode' must be block or detect"),
    ("[waf]\nupload_min_severity = 'urgent'\n", "'waf.upload_min_severity' must be one of critical"),
])
def test_bad_site_tables_are_one_error_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, text)


def test_every_site_setting_is_a_waf_setting_with_the_same_range() -> None:
    """A site overrides [waf]'s own settings, with their types and bounds: nothing a site can say that [waf]
    cannot, and no range that drifts from [waf]'s."""
    waf = {f.name: f for f in dataclasses.fields(WafConfig)}
    waf_types = typing.get_type_hints(WafConfig)
    for f, tp in zip(dataclasses.fields(WafSite), typing.get_type_hints(WafSite).values(), strict=True):
        assert f.name in waf, f.name
        assert tp == waf_types[f.name] | None, f.name
        assert (f.metadata["min"], f.metadata["max"]) == (waf[f.name].metadata["min"], waf[f.name].metadata["max"])
        assert f.default is None and f.metadata["help"]


def test_every_limit_a_front_end_enforces_is_a_site_setting() -> None:
    """SiteLimits is built from the site's effective [waf] by field name: each of its fields must be a setting a
    site can override, of the same type (a limit only [waf] could set would not be per site)."""
    site_types = typing.get_type_hints(WafSite)
    for name, tp in typing.get_type_hints(SiteLimits).items():
        assert site_types.get(name) == tp | None, name


def test_config_show_writes_sites_a_user_can_paste_back(tmp_path: Path) -> None:
    path = tmp_path / "hostguard.toml"
    path.write_text(SITES)
    loaded = load(str(path), SCHEMA)
    shown = render_toml(loaded)
    again = tmp_path / "again.toml"
    again.write_text(shown)
    assert load(str(again), SCHEMA)[WafConfig] == loaded[WafConfig]
    assert tomllib.loads(shown)["waf"]["sites"]["blog.example.test"]["mode"] == "detect"


def test_a_site_named_on_the_command_line_must_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "hostguard.toml"
    path.write_text(SITES)
    assert main(["--config", str(path), "--state", str(tmp_path / "state"), "waf", "proxy", "--listen",
                 "127.0.0.1:0", "--upstream", "http://127.0.0.1:9", "--site", "shpo"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--site 'shpo'" in err and "known: default, blog.example.test, shop" in err


BODY = b"title=My+holiday&text=" + b"x" * 100


def _upload(size: int) -> tuple[list[tuple[str, str]], bytes]:
    body = (b'--b0\r\nContent-Disposition: form-data; name="video"; filename="lake.mp4"\r\nContent-Type: '
            b"application/octet-stream\r\n\r\n" + b"\x00\x01" * (size // 2) + b"\r\n--b0--\r\n")
    return [("Host", "media.example.test"), ("User-Agent", "Mozilla/5.0 Firefox/128.0"), ("Accept", "*/*"),
            ("Content-Type", "multipart/form-data; boundary=b0"), ("Content-Length", str(len(body)))], body


def test_two_sites_of_one_config_judge_with_their_own_engine_settings(tmp_path: Path) -> None:
    """The same attack: refused on the shop (with the site's status), recorded only on the learning blog. The
    same 14 MB upload: over the engine's body limit on the default site, within it on the media site."""
    _need_library()
    config = WafConfig(max_buffered_bytes=64 << 20, scan_uploads=False, sites={
        "shop": WafSite(block_status=406), "blog": WafSite(mode="detect"), "media": WafSite(max_body_bytes=32 << 20)})
    log = tmp_path / "events.jsonl"
    gates = {name: Gate(config, str(log), site=name) for name in ("shop", "blog", "media", "default")}
    try:
        attack = "/search?q=1%27%20OR%20%271%27%3D%271"
        headers = [("Host", "a.example.test"), ("User-Agent", "Mozilla/5.0 Firefox/128.0"), ("Accept", "*/*")]
        shop = gates["shop"].decide("GET", attack, headers, b"", "198.51.100.4")
        blog = gates["blog"].decide("GET", attack, headers, b"", "198.51.100.4")
        assert (shop.blocked, shop.status, blog.blocked) == (True, 406, False)
        upload_headers, upload = _upload(14_000_000)
        media = gates["media"].decide("POST", "/videos", upload_headers, upload, "198.51.100.5")
        default = gates["default"].decide("POST", "/videos", upload_headers, upload, "198.51.100.5")
        assert not media.blocked and default.blocked
    finally:
        for gate in gates.values():
            gate.close()
    events = {e["request_id"]: e for e in map(json.loads, log.read_text().splitlines())}
    assert (events[shop.request_id]["site"], events[shop.request_id]["action"]) == ("shop", "blocked")
    assert (events[blog.request_id]["site"], events[blog.request_id]["action"]) == ("blog", "detected")
    # the engine's own body limit matches no rule: the refusal is an event all the same
    assert (events[default.request_id]["site"], events[default.request_id]["action"]) == ("default", "blocked")
    assert media.request_id not in events


def test_an_exclusion_learned_on_one_site_applies_to_that_site_only(tmp_path: Path) -> None:
    _need_library()
    exclusion = Exclusion("a1b2c3d4e5f6", "blog", 941160, "/wp-admin/post.php", "ARGS:content", 6, 3, 18, PROPOSED,
                          "2026-11-03T00:00:00+00:00")
    config = WafConfig(sites={"blog": WafSite(), "shop": WafSite()})
    body = b"content=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E"
    headers = [("Host", "a.example.test"), ("User-Agent", "Mozilla/5.0 Firefox/128.0"), ("Accept", "*/*"),
               ("Content-Type", "application/x-www-form-urlencoded"), ("Content-Length", str(len(body)))]
    matched = {}
    for site in ("blog", "shop"):
        gate = Gate(config, None, site=site, exclusions=[exclusion])
        try:
            decision = gate.decide("POST", "/wp-admin/post.php", headers, body, "198.51.100.4")
        finally:
            gate.close()
        matched[site] = {m.id for m in decision.verdict.matches}
    assert 941160 not in matched["blog"] and 941160 in matched["shop"]


def test_the_engine_reads_the_sites_body_limit() -> None:
    """Written after base.conf's default (the later directive wins): what nginx's ModSecurity would load too."""
    text = assemble(site_settings(WafConfig(sites={"api": WafSite(max_body_bytes=65536)}), "api")[0])
    assert text.index("SecRequestBodyLimit 65536") > text.index("base.conf")
    assert "SecRequestBodyNoFilesLimit 65536" in text


def test_rules_files_of_the_owner_run_on_every_site(tmp_path: Path) -> None:
    """[waf] rules_files: the owner's own rules load after CRS's and hostguard's, before REQUEST-949 decides,
    so a rule there that adds to the score refuses the request; a site without the file is not changed."""
    rules = tmp_path / "local.conf"
    rules.write_text('SecRule ARGS:coupon "@streq LEAKED-2026" "id:30001,phase:2,block,msg:\'leaked coupon\','
                     "severity:'CRITICAL',setvar:'tx.anomaly_score_pl1=+%{tx.critical_anomaly_score}'\"\n")
    config = WafConfig(rules_files=(str(rules),), sites={"shop": WafSite()})
    text = assemble(site_settings(config, "shop")[0])
    assert text.index(str(rules)) < text.index("REQUEST-949")
    _need_library()
    from hostguard.waf.engine import Engine, Request

    with Engine(text=text) as engine, Engine(text=assemble(site_settings(WafConfig(), "default")[0])) as plain:
        leaked = Request("GET", "/cart?coupon=LEAKED-2026", [("Host", "shop.example.test")])
        other = Request("GET", "/cart?coupon=WELCOME-10", [("Host", "shop.example.test")])
        assert engine.inspect(leaked).disruptive and not engine.inspect(other).disruptive
        assert not plain.inspect(leaked).disruptive
