"""The rules files ``waf enable`` writes (ruleset.server_rules), loaded by both engines: libmodsecurity3
through hostguard's binding, and Apache's mod_security2 2.9 by ``apache2 -t`` on a private configuration
laid out as Debian's (hostguard's file first, then CRS). Plus what keeps hostguard's own rules portable:
no ``\\\\`` in a rule (Apache's reader eats it), attack rules in phase 2 (under Apache they load before
REQUEST-901, which zeroes the score in phase 1)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hostguard.store.waf import Exclusion
from hostguard.waf.engine import Engine
from hostguard.waf.learn import server_exclusion_rules
from hostguard.waf.ruleset import CRS_RULES, OWN_PACKAGES, WafSettings, _data_path, crs_updates, own_rule_files, server_rules
from tests.conftest import need_tool
from tests.waf.servers import SBIN, scratch
from tests.waf.test_engine import _need_library

RULE_LINE = re.compile(r'(?m)^\s*Sec(?:Rule|Action)\b.*$')


def _rule_text(path: str) -> str:
    return "\n".join(line for line in Path(path).read_text().splitlines() if not line.lstrip().startswith("#"))


def test_own_rules_write_a_backslash_as_x5c() -> None:
    for path in [*own_rule_files(), _data_path("base.conf"), *(_data_path(f"exclusions/{a}.conf") for a in OWN_PACKAGES)]:
        assert "\\\\" not in _rule_text(path), f"{path}: write a literal backslash as \\x5c in a regex"


def test_own_attack_rules_are_phase_2() -> None:
    """A rule that scores is phase 2 (REQUEST-901 zeroes the score in phase 1, and Apache loads hostguard's rules
    before it); a phase-1 rule only chooses how the body is read (pass, no score)."""
    for path in own_rule_files():
        text = _rule_text(path)
        rules = re.findall(r'"id:(\d+),phase:(\d),(\w+)', text)
        assert rules and all(phase == "2" for _, phase, action in rules if action != "pass"), (path, rules)
        for rule_id, phase, _ in rules:
            if phase == "1":
                body = re.split(r"(?m)^Sec", text[text.index(f'"id:{rule_id},'):])[0]
                assert "anomaly_score" not in body and "ctl:requestBodyProcessor" in body, (path, rule_id)


def test_the_mod_security2_variant_reads_the_raw_body_as_stream_input_body() -> None:
    v3 = server_rules(WafSettings(), "libmodsecurity3")
    v2 = server_rules(WafSettings(), "modsecurity2", crs_loaded_after=True)
    assert "STREAM_INPUT_BODY" not in v3 and "SecStreamInBodyInspection" not in v3
    assert "SecStreamInBodyInspection On" in v2
    targets = re.findall(r'(?m)^\s*SecRule\s+(\S+)', v2)
    assert not [t for t in targets if "REQUEST_BODY" in t.split("|")]
    assert any("STREAM_INPUT_BODY" in t.split("|") for t in targets)
    assert "REQBODY_ERROR" in v2   # not a REQUEST_BODY target: left alone
    # the same rules otherwise, in the same order
    assert re.sub(r"STREAM_INPUT_BODY", "REQUEST_BODY", v2).count("id:20") == v3.count("id:20")


def test_an_exclusion_of_the_body_also_excludes_the_raw_body_mod_security2_reads() -> None:
    # CRS's rules read REQUEST_BODY, hostguard's STREAM_INPUT_BODY there: an application package's exclusion
    # of the body must reach both
    v2 = server_rules(WafSettings(applications=("sentry",)), "modsecurity2", crs_loaded_after=True)
    v3 = server_rules(WafSettings(applications=("sentry",)), "libmodsecurity3")
    for tag in ("language-java", "attack-sqli"):
        assert (f"ctl:ruleRemoveTargetByTag={tag};REQUEST_BODY,ctl:ruleRemoveTargetByTag={tag};STREAM_INPUT_BODY"
                in v2)
        assert f"ctl:ruleRemoveTargetByTag={tag};REQUEST_BODY" in v3 and "STREAM_INPUT_BODY" not in v3


def test_crs_loaded_after_means_no_crs_include_and_run_time_removals() -> None:
    text = server_rules(WafSettings(remove_ids=(942100, 920350)), "modsecurity2", crs_loaded_after=True)
    assert not re.search(r"(?m)^Include", text) and not re.search(r"(?m)^SecRuleRemoveById", text)
    assert 'SecAction "id:10020,phase:1,pass,nolog,t:none,ctl:ruleRemoveById=942100,ctl:ruleRemoveById=920350"' in text
    assert "900990" not in text and "SecDefaultAction" not in text   # Debian's crs-setup.conf sets them


def test_the_libmodsecurity3_rules_file_loads_and_blocks() -> None:
    _need_library()
    from hostguard.waf.engine import Request

    with Engine(text=server_rules(WafSettings(applications=("phpmyadmin",)), "libmodsecurity3")) as engine:
        verdict = engine.inspect(Request("GET", "/x?q=%24%7Bjndi%3Aldap%3A%2F%2F198.51.100.2%2Fa%7D",
                                         [("Host", "shop.example.test")]))
        assert verdict.disruptive and {20701, 949110} <= set(verdict.rule_ids)


def _exclusion(site: str, rule: int, path: str, variable: str) -> Exclusion:
    return Exclusion(f"x-{site}-{rule}", site, rule, path, variable, 6, 3, 40, "accepted", "2026-12-01T00:00:00Z")


EXCLUSIONS = [_exclusion("shop.example.test", 941160, "/reviews", "ARGS:text"),
              _exclusion("default", 942100, "/search", "ARGS:q")]


def test_a_servers_rules_file_applies_accepted_exclusions_for_their_host_only() -> None:
    """Learning proposes exclusions from a server's events too, whose site is the request's host name: in the
    server's one rules file an exclusion of a site holds for that host only, one of `default` for every host."""
    _need_library()
    from hostguard.waf.engine import Request

    text = server_rules(WafSettings(), "libmodsecurity3", site_rules=server_exclusion_rules(EXCLUSIONS))
    with Engine(text=text) as engine:
        def ids(host: str, target: str) -> list[int]:
            return engine.inspect(Request("GET", target, [("Host", host)])).rule_ids

        review = "/reviews?text=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E"
        assert 941160 not in ids("shop.example.test", review)
        assert 941160 not in ids("SHOP.example.test:8443", review)
        assert 941160 in ids("blog.example.test", review)            # another site
        assert 941160 in ids("shop.example.test.evil.test", review)  # not a suffix match
        assert 941160 in ids("shop.example.test", review.replace("text=", "title="))   # another argument
        search = "/search?q=1%27%20or%20%271%27%3D%271"
        assert 942100 not in ids("shop.example.test", search) and 942100 not in ids("blog.example.test", search)
        assert 942100 in ids("blog.example.test", search.replace("/search", "/find"))   # another path


HTTPD = """\
ServerName t.test
ServerRoot {d}
DefaultRuntimeDir {d}
PidFile {d}/pid
ErrorLog {d}/error.log
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule unique_id_module /usr/lib/apache2/modules/mod_unique_id.so
LoadModule security2_module /usr/lib/apache2/modules/mod_security2.so
Listen 127.0.0.1:1
SecDataDir {d}
Include {d}/hostguard.conf
{crs}
"""


@pytest.mark.waf_server
@pytest.mark.parametrize("crs_after", [True, False])
def test_mod_security2_loads_the_apache_rules_file(crs_after: bool) -> None:
    """Both layouts: CRS loaded after hostguard's file (Debian's security2.conf and owasp-crs.load) and CRS
    included by hostguard's file itself."""
    need_tool("apache2")
    if not Path("/usr/lib/apache2/modules/mod_security2.so").exists() or not Path(CRS_RULES).is_dir():
        pytest.skip(reason="mod_security2 or CRS is missing: scripts/install-system-deps.sh test installs "
                           "libapache2-mod-security2 modsecurity-crs")
    with scratch("hg-modsec2-") as d:
        settings = WafSettings(applications=("wordpress", "phpmyadmin"), remove_ids=(920350,))
        (d / "hostguard.conf").write_text(server_rules(settings, "modsecurity2", crs_loaded_after=crs_after,
                                                       site_rules=server_exclusion_rules(EXCLUSIONS)))
        crs = ""
        if crs_after:
            (d / "crs-setup.conf").write_text('SecDefaultAction "phase:1,log,auditlog,pass"\n'
                                              'SecDefaultAction "phase:2,log,auditlog,pass"\n'
                                              'SecAction "id:900990,phase:1,nolog,pass,t:none,'
                                              'setvar:tx.crs_setup_version=334"\n')
            (d / "crs-updates.conf").write_text(crs_updates(settings, "modsecurity2"))
            crs = f"Include {d}/crs-setup.conf\nInclude {CRS_RULES}/*.conf\nInclude {d}/crs-updates.conf"
        (d / "httpd.conf").write_text(HTTPD.format(d=d, crs=crs))
        apache2 = shutil.which("apache2", path=SBIN) or "apache2"
        done = subprocess.run([apache2, "-d", str(d), "-f", str(d / "httpd.conf"), "-t"], capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
