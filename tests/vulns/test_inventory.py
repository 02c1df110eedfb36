"""The inventory under --root (a tree written here) and live: source packages and binNMUs, third-party
packages as not covered, Python, npm and Composer environments, and the os-release -> OSV ecosystem table."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from hostguard.host.base import LiveHost, RootHost
from hostguard.host.packages import parse_status
from hostguard.vulns.inventory import (
    InventoryOptions,
    Item,
    collect_inventory,
    dpkg_items,
    npm_lock_items,
    parse_os_release,
    release_ecosystem,
    version_reason,
)
from tests.vulns.inventory_helpers import STATUS, write_tree


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "host")


def _by(items: list[Item], ecosystem: str) -> dict[str, Item]:
    return {i.name: i for i in items if i.ecosystem == ecosystem}


@pytest.mark.parametrize(("text", "ecosystem"), [
    ('ID=debian\nVERSION_ID="12"\nVERSION="12 (bookworm)"\n', "Debian:12"),
    ('ID=debian\nVERSION_ID="11"\n', "Debian:11"),
    ("ID=debian\nPRETTY_NAME=\"Debian GNU/Linux trixie/sid\"\n", None),  # testing/sid: no VERSION_ID
    ('ID=ubuntu\nVERSION_ID="22.04"\nVERSION="22.04.3 LTS (Jammy Jellyfish)"\n', "Ubuntu:22.04:LTS"),
    ('ID=ubuntu\nVERSION_ID="23.10"\nVERSION="23.10 (Mantic Minotaur)"\n', "Ubuntu:23.10"),
    ("ID=alpine\nVERSION_ID=3.19.1\n", "Alpine:v3.19"),
    ("ID=alpine\nVERSION_ID=3.20.0_alpha20240329\n", "Alpine:v3.20"),
    ('ID="rocky"\nVERSION_ID="9.3"\n', "Rocky Linux:9"),
    ('ID="almalinux"\nVERSION_ID="8.9"\n', "AlmaLinux:8"),
    ('ID="rhel"\nVERSION_ID="9.3"\n', None),  # Red Hat publishes per repository: no single ecosystem
    ('ID=linuxmint\nID_LIKE="ubuntu debian"\nVERSION_ID="21.2"\n', None),  # never another release's records
])
def test_os_release_table_names_the_osv_ecosystem(text: str, ecosystem: str | None) -> None:
    assert release_ecosystem(parse_os_release(text)) == ecosystem


def test_os_release_quoting() -> None:
    fields = parse_os_release('# comment\nNAME="Debian \\"GNU\\"/Linux"\nID=\'debian\'\nBAD LINE\n')
    assert fields == {"NAME": 'Debian "GNU"/Linux', "ID": "debian"}


def test_dpkg_items_are_source_packages_with_their_binaries(tree: Path) -> None:
    inv = collect_inventory(RootHost(str(tree)), InventoryOptions(paths=("/srv", "/opt", "/var/www")))
    assert inv.release is not None and inv.release.ecosystem == "Debian:12"
    deb = _by(list(inv.items), "Debian:12")
    util = deb["util-linux"]
    assert (util.version, util.binaries, util.binary_versions, util.not_covered) == (
        "2.38.1-5+deb12u3", ("bsdutils", "libmount1", "util-linux"),
        ("1:2.38.1-5+deb12u3", "2.38.1-5+deb12u3", "2.38.1-5+deb12u3"), None)
    # the binNMU: the source version from Source:, both architectures named as apt takes them
    hgz = deb["hgzlib"]
    assert (hgz.version, hgz.binaries, hgz.not_covered) == ("1:1.2.13.dfsg-1", ("libhgz1:amd64", "libhgz1:i386"), None)
    assert (deb["hgsame"].version, deb["hgsame"].binary_versions) == ("3.1-2", ("3.1-2+b2",))
    assert "hgold" not in deb  # config-files only
    assert all(i.manager == "apt-get" and i.origin == "/var/lib/dpkg/status" for i in deb.values())


def test_third_party_packages_are_not_covered_by_name_with_the_reason(tree: Path) -> None:
    inv = collect_inventory(RootHost(str(tree)), InventoryOptions(paths=()))
    reasons = {i.name: i.not_covered for i in inv.not_covered() if i.ecosystem == "Debian:12"}
    assert reasons == {
        "nodejs": "NodeSource repository (deb.nodesource.com)",
        "postgresql-16": "PostgreSQL PGDG repository (apt.postgresql.org)",
        "docker-ce": "vendor repository build for this release (docker-ce style: 5:24.0.7-1~debian.12~bookworm)",
        "osslsigncode": "Debian backports (the security team does not track backports)",
        "hgvendor": "maintained by docker.com, not the distribution",
        "hglisted": "from repo.vendor.test/apt",
    }
    assert {i.name for i in inv.covered() if i.ecosystem == "Debian:12"} == {"util-linux", "hgzlib", "hgsame"}
    assert {"ecosystem": "Debian:12", "name": "nodejs", "version": "20.11.0-1nodesource1"} not in inv.to_jsonl()


@pytest.mark.parametrize(("version", "third_party"), [
    ("20.11.0-1nodesource1", True), ("16.1-1.pgdg120+1", True), ("5:24.0.7-1~debian.12~bookworm", True),
    ("5:24.0.7-1~ubuntu.22.04~jammy", True), ("2.9-1~bpo12+1", True), ("1.25.3-1~bookworm", True),
    ("1:10.11.6+maria~deb12", True), ("8.0.35-1debian12", True), ("8.0.35-1ubuntu22.04", True), ("16.5.1-ce.0", True),
    ("8.2.12-1+0~20231027.43+debian12~1.gbpd3fdba", True),
    # the distribution's own forms: stable updates, security updates, binNMUs, Ubuntu's
    ("2.38.1-5+deb12u3", False), ("1:9.2p1-2+deb12u2", False), ("1.2-3+b1", False), ("3.0.11-1~deb12u2", False),
    ("2.35-0ubuntu3.6", False), ("1.21.4-1ubuntu1~22.04.1", False), ("3.0.2-0ubuntu1.15", False),
    ("1.1.1-1ubuntu0.22.04.1", False), ("252.22-1~deb12u1", False),
])
def test_version_rules(version: str, third_party: bool) -> None:
    assert (version_reason(version) is not None) is third_party, version_reason(version)


def test_backports_suite_in_apt_lists_is_not_covered() -> None:
    [pkg] = parse_status("Package: hgb\nStatus: install ok installed\nVersion: 1.0-1\nArchitecture: all\n")
    lists = {("hgb", "1.0-1"): ["deb.debian.org_debian_dists_bookworm-backports_main_binary-amd64_Packages"]}
    [item] = dpkg_items([pkg], "Debian:12", lists)
    assert item.not_covered == "from deb.debian.org/debian (backports)"
    both = {("hgb", "1.0-1"): [*lists[("hgb", "1.0-1")],
                               "ftp.de.debian.org_debian_dists_bookworm_main_binary-amd64_Packages"]}
    assert dpkg_items([pkg], "Debian:12", both)[0].not_covered is None


def test_unknown_release_is_not_matched_against_any_ecosystem() -> None:
    [item] = dpkg_items(parse_status(STATUS.split("\n\n")[2] + "\n"), None)
    assert (item.name, item.ecosystem, item.not_covered) == (
        "util-linux", "", "no OSV ecosystem known for this release (data/vulns/releases.toml)")


def test_python_distributions_of_the_system_and_virtualenvs(tree: Path) -> None:
    inv = collect_inventory(RootHost(str(tree)), InventoryOptions(paths=("/srv",)))
    py = _by(list(inv.items), "PyPI")
    assert set(py) == {"PyJWT", "requests", "Django", "legacy_thing"}
    assert py["PyJWT"].not_covered is not None and "distribution" in py["PyJWT"].not_covered
    assert (py["requests"].version, py["requests"].location, py["requests"].not_covered) == ("2.25.0", "/usr/local", None)
    assert (py["Django"].version, py["Django"].location) == ("4.2.1", "/srv/app/venv")
    assert py["Django"].origin == "/srv/app/venv/lib/python3.11/site-packages/Django-4.2.1.dist-info/METADATA"
    assert (py["legacy_thing"].version, py["legacy_thing"].location) == ("0.3", "/srv/app/venv")


def test_npm_lock_files_v1_v2_v3_and_node_modules(tree: Path) -> None:
    inv = collect_inventory(RootHost(str(tree)), InventoryOptions(paths=("/srv", "/opt", "/var/www")))
    npm = sorted((i.location, i.name, i.version) for i in inv.items if i.ecosystem == "npm")
    assert npm == [
        ("/opt/nolock", "@types/node", "20.1.0"), ("/opt/nolock", "left-pad", "1.1.0"),
        ("/opt/old", "minimist", "0.0.8"), ("/opt/old", "minimist", "1.2.0"), ("/opt/old", "mkdirp", "0.5.1"),
        ("/srv/web", "@scope/pkg", "2.0.0"), ("/srv/web", "lodash", "4.17.20"), ("/srv/web", "minimist", "1.2.5"),
        ("/srv/web", "qs", "6.5.2"),
        ("/var/www/shop", "axios", "0.21.1"),
    ]


def test_composer_lock(tree: Path) -> None:
    inv = collect_inventory(RootHost(str(tree)), InventoryOptions(paths=("/var/www",)))
    php = sorted((i.location, i.name, i.version, i.origin) for i in inv.items if i.ecosystem == "Packagist")
    assert php == [("/var/www/blog", n, v, "/var/www/blog/composer.lock") for n, v in
                   [("guzzlehttp/guzzle", "7.4.0"), ("monolog/monolog", "2.3.5"), ("phpunit/phpunit", "9.5.10")]]


def test_a_broken_lock_file_is_a_problem_not_a_failure(tree: Path) -> None:
    (tree / "srv/web/package-lock.json").write_text("{not json")
    inv = collect_inventory(RootHost(str(tree)), InventoryOptions(paths=("/srv",)))
    assert [p[0] for p in inv.problems] == ["/srv/web"]
    assert "Django" in _by(list(inv.items), "PyPI")


def test_npm_lock_rejects_non_objects() -> None:
    with pytest.raises(ValueError):
        npm_lock_items(json.dumps([1, 2]), "x", "/x")


def test_the_tree_is_read_never_this_machine(tmp_path: Path) -> None:
    """An empty tree has no packages, although this machine has a dpkg database and Python distributions."""
    (tmp_path / "etc").mkdir()
    inv = collect_inventory(RootHost(str(tmp_path)))
    assert inv.items == () and inv.release is None


def test_apk_items_are_origins(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text("ID=alpine\nVERSION_ID=3.19.1\n")
    (tmp_path / "lib/apk/db").mkdir(parents=True)
    (tmp_path / "lib/apk/db/installed").write_text(
        "P:libcrypto3\nV:3.1.4-r5\nA:x86_64\no:openssl\n\nP:libssl3\nV:3.1.4-r5\nA:x86_64\no:openssl\n\n"
        "P:busybox\nV:1.36.1-r15\nA:x86_64\no:busybox\n\n")
    inv = collect_inventory(RootHost(str(tmp_path)), InventoryOptions(paths=()))
    assert [(i.ecosystem, i.name, i.version, i.binaries, i.manager) for i in inv.items] == [
        ("Alpine:v3.19", "busybox", "1.36.1-r15", ("busybox",), "apk"),
        ("Alpine:v3.19", "openssl", "3.1.4-r5", ("libcrypto3", "libssl3"), "apk")]


def test_live_inventory_has_this_machines_source_packages() -> None:
    """Live: every installed binary of dpkg-query is in the inventory, under its source package and version."""
    out = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Status}\\t${Package}\\t${source:Package}\\t"
                          "${source:Version}\\n"], check=True, capture_output=True, text=True).stdout
    inv = collect_inventory(LiveHost(), InventoryOptions(paths=()))
    assert inv.release is not None and inv.release.ecosystem == "Debian:12"
    have = {(b.partition(":")[0], i.name, i.version) for i in inv.items if i.manager == "apt-get" for b in i.binaries}
    want = {tuple(line.split("\t")[1:]) for line in out.splitlines() if line.startswith("installed\t")}
    assert want and want == have


def test_the_walk_follows_no_symlink_and_says_where_it_stopped(tmp_path: Path) -> None:
    from hostguard.host.base import RootHost
    from hostguard.vulns.inventory import InventoryOptions, collect_inventory

    root = tmp_path / "host"
    venv = root / "opt/real/venv"
    (venv / "lib/python3.11/site-packages/hgpkg-1.0.dist-info").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / "lib/python3.11/site-packages/hgpkg-1.0.dist-info/METADATA").write_text("Name: hgpkg\nVersion: 1.0\n")
    (root / "srv").mkdir()
    (root / "srv/link").symlink_to("../opt/real")
    linked = collect_inventory(RootHost(str(root)), InventoryOptions(paths=("/srv",)))
    assert [i for i in linked.items if i.name == "hgpkg"] == []        # reached only through the link
    direct = collect_inventory(RootHost(str(root)), InventoryOptions(paths=("/opt",)))
    assert [i.location for i in direct.items if i.name == "hgpkg"] == ["/opt/real/venv"]
    capped = collect_inventory(RootHost(str(root)), InventoryOptions(paths=("/opt",), max_dirs=2))
    assert [i for i in capped.items if i.name == "hgpkg"] == []
    assert any("stopped after 2 directories" in why for _, why in capped.problems), capped.problems
