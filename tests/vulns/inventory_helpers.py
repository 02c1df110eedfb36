"""A host tree for the inventory tests, written here: a Debian 12 dpkg database with Source: lines, a binNMU
and third-party packages, system and virtualenv Python distributions, npm lock files v1/v2/v3, a project
without a lock file and a composer.lock."""

from __future__ import annotations

import json
from pathlib import Path

DEBIAN_12 = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\nVERSION="12 (bookworm)"\n'


def stanza(name: str, version: str, source: str = "", arch: str = "amd64", state: str = "installed",
           maintainer: str = "Test Maintainers <pkg-test@lists.debian.test>", multi_arch: str = "") -> str:
    lines = [f"Package: {name}", f"Status: install ok {state}", "Priority: optional", "Section: libs",
             f"Maintainer: {maintainer}", f"Architecture: {arch}"]
    if multi_arch:
        lines.append(f"Multi-Arch: {multi_arch}")
    if source:
        lines.append(f"Source: {source}")
    lines += [f"Version: {version}", "Description: test package", " a package of the inventory tests", ""]
    return "\n".join(lines) + "\n"


STATUS = "".join([
    # util-linux: binaries with other names, one with an epoch of its own (Source: names the source version)
    stanza("bsdutils", "1:2.38.1-5+deb12u3", "util-linux (2.38.1-5+deb12u3)"),
    stanza("libmount1", "2.38.1-5+deb12u3", "util-linux"),
    stanza("util-linux", "2.38.1-5+deb12u3"),
    # a binNMU of hgzlib: Source: gives the source version, the binary's +b1 is not the source's
    stanza("libhgz1", "1:1.2.13.dfsg-1+b1", "hgzlib (1:1.2.13.dfsg-1)", multi_arch="same"),
    stanza("libhgz1", "1:1.2.13.dfsg-1+b1", "hgzlib (1:1.2.13.dfsg-1)", arch="i386", multi_arch="same"),
    # a binNMU of a package whose source has its name: no Source line at all, +b2 dropped
    stanza("hgsame", "3.1-2+b2"),
    # removed, config files left: not installed, not in the inventory
    stanza("hgold", "0.5-1", state="config-files"),
    # third parties
    stanza("nodejs", "20.11.0-1nodesource1"),
    stanza("postgresql-16", "16.1-1.pgdg120+1", "postgresql-16"),
    stanza("docker-ce", "5:24.0.7-1~debian.12~bookworm", maintainer="Docker <support@docker.com>"),
    stanza("osslsigncode", "2.9-1~bpo12+1"),
    stanza("hgvendor", "2.0-1", maintainer="Vendor Team <packages@docker.com>"),
    stanza("hglisted", "4.2-1"),
])


def write_tree(root: Path) -> Path:
    """The tree described above, at ``root``."""
    def put(path: str, text: str) -> None:
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    put("/etc/os-release", DEBIAN_12)
    put("/var/lib/dpkg/status", STATUS)
    # apt lists: hglisted 4.2-1 is carried only by a third-party repository
    put("/var/lib/apt/lists/repo.vendor.test_apt_dists_stable_main_binary-amd64_Packages",
        "Package: hglisted\nVersion: 4.2-1\nArchitecture: amd64\n\nPackage: other\nVersion: 1\n")
    put("/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages",
        "Package: util-linux\nVersion: 2.38.1-5+deb12u3\n\nPackage: hglisted\nVersion: 4.1-1\n")
    # the system's Python: the distribution's (not covered) and pip's /usr/local
    put("/usr/lib/python3/dist-packages/PyJWT-2.6.0.egg-info/PKG-INFO",
        "Metadata-Version: 2.1\nName: PyJWT\nVersion: 2.6.0\n")
    put("/usr/local/lib/python3.11/dist-packages/requests-2.25.0.dist-info/METADATA",
        "Metadata-Version: 2.1\nName: requests\nVersion: 2.25.0\nSummary: x\n\nName: not-a-header\n")
    # a virtualenv of an application under /srv, with a dist-info and a single-file egg-info
    put("/srv/app/venv/pyvenv.cfg", "home = /usr/bin\nversion = 3.11.2\n")
    put("/srv/app/venv/lib/python3.11/site-packages/Django-4.2.1.dist-info/METADATA",
        "Metadata-Version: 2.1\nName: Django\nVersion: 4.2.1\n")
    put("/srv/app/venv/lib/python3.11/site-packages/legacy_thing-0.3-py3.11.egg-info",
        "Metadata-Version: 1.0\nName: legacy_thing\nVersion: 0.3\n")
    # npm: lockfile v3 (packages only), v2 (both), v1 (dependencies only), and no lock file
    put("/srv/web/package-lock.json", json.dumps({
        "name": "web", "lockfileVersion": 3, "packages": {
            "": {"name": "web", "version": "1.0.0"},
            "node_modules/lodash": {"version": "4.17.20"},
            "node_modules/express/node_modules/qs": {"version": "6.5.2"},
            "node_modules/aliased": {"name": "minimist", "version": "1.2.5"},
            "node_modules/local-lib": {"link": True, "resolved": "../lib"},
            "node_modules/@scope/pkg": {"version": "2.0.0"}}}))
    put("/var/www/shop/package-lock.json", json.dumps({
        "name": "shop", "lockfileVersion": 2,
        "packages": {"": {"name": "shop"}, "node_modules/axios": {"version": "0.21.1"}},
        "dependencies": {"axios": {"version": "0.21.1"}, "ignored-when-packages-exist": {"version": "9.9.9"}}}))
    put("/opt/old/package-lock.json", json.dumps({
        "name": "old", "lockfileVersion": 1, "dependencies": {
            "minimist": {"version": "0.0.8"},
            "mkdirp": {"version": "0.5.1", "dependencies": {"minimist": {"version": "1.2.0"}}},
            "mine": {"version": "file:../mine"}}}))
    put("/opt/nolock/package.json", json.dumps({"name": "nolock", "version": "1.0.0"}))
    put("/opt/nolock/node_modules/left-pad/package.json", json.dumps({"name": "left-pad", "version": "1.1.0"}))
    put("/opt/nolock/node_modules/@types/node/package.json", json.dumps({"name": "@types/node", "version": "20.1.0"}))
    # composer
    put("/var/www/blog/composer.lock", json.dumps({
        "packages": [{"name": "guzzlehttp/guzzle", "version": "7.4.0"}, {"name": "monolog/monolog", "version": "v2.3.5"}],
        "packages-dev": [{"name": "phpunit/phpunit", "version": "9.5.10"}]}))
    return root
