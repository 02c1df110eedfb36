"""Enabling a virtual patch in the hostguard config file: the one-line edit for each layout a file can have,
applied by respond/apply.py (the path `hostguard fix` writes through) to a real file and read back by
hostguard's own config loader; the layouts it does not rewrite are left to the owner with the line to write.
Also: where a patch applies (the matcher over the inventory), and the package finding naming the patch."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostguard.config import load
from hostguard.engine.registry import default_registry
from hostguard.host.base import HostError, RootHost
from hostguard.remediation import Edit, Write
from hostguard.respond.apply import apply
from hostguard.vulns.findings import package_finding
from hostguard.vulns.inventory import Inventory, Item
from hostguard.vulns.match import Match, PackageResult
from hostguard.vulns.osv import Vulnerability
from hostguard.vulns.virtual_patches import (
    WafConfigFile,
    applicable,
    enable_steps,
    installed,
    read_waf_config,
    target_path,
    view,
)
from hostguard.vulns.webapps import WebApp
from hostguard.waf.config import WafConfig
from hostguard.waf.vpatch import catalogue

PATH = "/etc/hostguard/hostguard.toml"

# (the file before, the file after enabling "phpunit-eval-stdin")
LAYOUTS = [
    ("[vulns]\npaths = [\"/srv\"]\n",
     "[vulns]\npaths = [\"/srv\"]\n\n[waf]\nvirtual_patches = [\"phpunit-eval-stdin\"]\n"),
    ("# hostguard\n[waf]\nmode = \"detect\"  # learning first\n\n[vulns]\nmax_depth = 4\n",
     "# hostguard\n[waf]\nvirtual_patches = [\"phpunit-eval-stdin\"]\nmode = \"detect\"  # learning first\n\n"
     "[vulns]\nmax_depth = 4\n"),
    ("[waf]\n  virtual_patches = [ \"drupal-form-api-rce\" ]   # 2018, until the upgrade\nparanoia = 2\n",
     "[waf]\n  virtual_patches = [\"drupal-form-api-rce\", \"phpunit-eval-stdin\"]   # 2018, until the upgrade\n"
     "paranoia = 2\n"),
    ("[ waf ] # the firewall\r\nmode = \"block\"\r\n",          # CRLF kept
     "[ waf ] # the firewall\r\nvirtual_patches = [\"phpunit-eval-stdin\"]\r\nmode = \"block\"\r\n"),
    ("[vulns]\nmax_depth = 4",                                  # no newline at the end
     "[vulns]\nmax_depth = 4\n\n[waf]\nvirtual_patches = [\"phpunit-eval-stdin\"]\n"),
    ("[vulns]\nmax_depth = 4\n[waf]\nvirtual_patches = []\n",        # an empty list, [waf] last
     "[vulns]\nmax_depth = 4\n[waf]\nvirtual_patches = [\"phpunit-eval-stdin\"]\n"),
]


def _cfg(root: Path, text: str | None) -> WafConfigFile:
    target = root / PATH.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if text is not None:
        target.write_bytes(text.encode())
        target.chmod(0o640)
    return read_waf_config(RootHost(str(root)), PATH)


@pytest.mark.parametrize(("before", "after"), LAYOUTS)
def test_the_edit_of_each_layout_is_applied_and_read_back(tmp_path: Path, before: str, after: str) -> None:
    cfg = _cfg(tmp_path, before)
    steps = enable_steps(cfg, "phpunit-eval-stdin")
    assert steps is not None and len(steps) == 1 and isinstance(steps[0], Edit)
    apply(steps, str(tmp_path))
    written = (tmp_path / PATH.lstrip("/")).read_bytes().decode()
    assert written == after
    assert (tmp_path / PATH.lstrip("/")).stat().st_mode & 0o777 == 0o640   # the file's mode kept
    assert "phpunit-eval-stdin" in load(str(tmp_path / PATH.lstrip("/")), default_registry().schema())[WafConfig] \
        .virtual_patches
    assert read_waf_config(RootHost(str(tmp_path)), PATH).enabled[-1] == "phpunit-eval-stdin"


def test_a_missing_or_blank_file_is_written_whole(tmp_path: Path) -> None:
    absent = _cfg(tmp_path, None)
    assert absent.text is None and absent.enabled == ()
    [step] = enable_steps(absent, "phpunit-eval-stdin") or ()
    assert step == Write(PATH, "[waf]\nvirtual_patches = [\"phpunit-eval-stdin\"]\n", "0600", "0:0")
    blank = _cfg(tmp_path, "\n\n")
    [step] = enable_steps(blank, "phpunit-eval-stdin") or ()
    assert isinstance(step, Write) and step.mode == "0640"


@pytest.mark.parametrize("text", [
    "[waf]\nvirtual_patches = [\n  \"drupal-form-api-rce\",\n]\n",     # the list over several lines
    "waf.mode = \"detect\"\n",                                            # [waf] as dotted keys
    "waf = { mode = \"detect\" }\n",                                      # an inline table
])
def test_layouts_not_rewritten_are_left_to_the_owner(tmp_path: Path, text: str) -> None:
    assert enable_steps(_cfg(tmp_path, text), "phpunit-eval-stdin") is None


@pytest.mark.parametrize(("text", "message"), [
    ("[waf]\nvirtual_patch = [\"x\"]\n", "unknown setting 'waf.virtual_patch'"),
    ("[waf\n", "config /etc/hostguard/hostguard.toml"),
    ("[waf]\nvirtual_patches = \"phpunit-eval-stdin\"\n", "'waf.virtual_patches' must be list"),
])
def test_a_broken_config_is_an_error_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(HostError, match="hostguard.toml") as caught:
        _cfg(tmp_path, text)
    assert message in str(caught.value)


def test_which_file_the_hosts_waf_reads() -> None:
    assert target_path(True, "/srv/conf/hg.toml") == "/srv/conf/hg.toml"
    assert target_path(True, None) == PATH
    assert target_path(False, "/srv/conf/hg.toml") == PATH   # a tree's WAF reads the tree's own file


def _item(ecosystem: str, name: str, version: str, location: str = "/srv/app") -> Item:
    return Item(ecosystem, name, version, "composer", f"{location}/composer.lock", location)


def test_where_patches_apply_is_the_matchers_answer() -> None:
    inventory = Inventory((_item("Packagist", "drupal/core", "8.5.0"), _item("Packagist", "drupal/core", "8.5.1", "/srv/b"),
                           _item("Packagist", "drupal/core", "dev-main", "/srv/c"),
                           _item("npm", "next", "14.2.24", "/srv/web"), _item("npm", "next", "14.2.25", "/srv/web2"),
                           _item("PyPI", "AIOHTTP", "3.9.1", "/srv/venv"),
                           Item("PyPI", "aiohttp", "3.8.1", "pip", "x", "", not_covered="the distribution's")))
    apps = [WebApp("WordPress", "4.7.1", "/var/www/blog"), WebApp("WordPress", "4.7.2", "/var/www/news")]
    found = {a.patch.id: a for a in applicable(catalogue().values(), installed(inventory, apps))}
    covers = {p: [(t.name, t.version, t.location, fix) for t, fix in a.covers] for p, a in found.items() if a.covers}
    assert covers == {
        "drupal-form-api-rce": [("drupal/core", "8.5.0", "/srv/app", "8.5.1")],   # 8.5.1: fixed
        "nextjs-middleware-bypass": [("next", "14.2.24", "/srv/web", "14.2.25")],
        "aiohttp-static-traversal": [("AIOHTTP", "3.9.1", "/srv/venv", "3.9.2")],  # PEP 503 name; the distro's not
        "wordpress-rest-content-injection": [("wordpress", "4.7.1", "/var/www/blog", None)],
    }
    [(thing, why)] = found["drupal-form-api-rce"].unevaluated
    assert thing.version == "dev-main" and "branch" in why   # a Composer branch cannot be placed: said


def _finding(ids: tuple[str, ...], version: str = "8.5.0", fix: str = "8.5.1") -> PackageResult:
    vuln = Vulnerability(id=ids[0], modified="", aliases=ids[1:], summary="x", affected=(), withdrawn=None, severity=())
    return PackageResult((Match(vuln, (fix,), fix, ()),), ())


def test_the_package_finding_names_the_patch_and_keeps_its_upgrade(tmp_path: Path) -> None:
    item = _item("Packagist", "drupal/core", "8.5.0")
    other = _item("Packagist", "drupal/core", "8.5.0", "/srv/other")
    findings = [package_finding(item, _finding(("GHSA-test-1", "CVE-2018-7600"))),
                package_finding(other, _finding(("GHSA-test-2", "CVE-2099-0001")))]   # another CVE: no patch
    inventory = Inventory((item, other))
    off = view(catalogue(), _cfg(tmp_path, "[vulns]\nmax_depth = 4\n"), inventory, (), findings)
    [offer] = off.offers
    assert offer.evidence["reported_by"] == ["CVE-2018-7600"]
    assert [a["location"] for a in offer.evidence["applies_to"]] == ["/srv/app", "/srv/other"]
    named, untouched = off.packages
    assert untouched == findings[1]
    assert named.fingerprint == findings[0].fingerprint and named.remediation.steps == findings[0].remediation.steps
    assert named.evidence["virtual_patches"][0]["enabled"] is False
    assert f"hostguard fix {offer.fingerprint[:12]}" in named.remediation.summary
    on = view(catalogue(), _cfg(tmp_path, "[waf]\nvirtual_patches = [\"drupal-form-api-rce\"]\n"), inventory, (),
              findings)
    assert on.offers == ()
    assert on.packages[0].title.endswith("(virtually patched: drupal-form-api-rce)")
    assert "Virtually patched until you upgrade" in on.packages[0].remediation.summary
    assert on.packages[0].remediation.steps == findings[0].remediation.steps   # the upgrade stays
    unknown = view(catalogue(), _cfg(tmp_path, "[waf]\nvirtual_patches = [\"drupal-rce\"]\n"), inventory, (), findings)
    assert any("'drupal-rce', which is no virtual patch" in p for p in unknown.problems)
