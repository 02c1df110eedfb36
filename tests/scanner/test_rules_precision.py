"""hostguard's own rules scan real, clean trees without a single match.

Precision matters as much as recall: an owner whose WordPress is reported as a webshell stops reading the report.
WordPress and phpMyAdmin as Debian installs them (``scripts/install-system-deps.sh test``) are scanned as if they
were under a web root (the worst case: the web_executables rules are on), this machine's programs, libraries,
Python and Perl modules as files outside one. A match here is fixed in the rule, never by passing over a path.
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest
import yara_x

from hostguard.scanner import rules

MAX_FILE = 32 << 20
CHUNK = 200
WORKERS = 2

# (test id, directories, in_web_root, fewest files a real install has: a tree that lost its files must not pass)
TREES = [
    ("wordpress", ["/usr/share/wordpress"], True, 500),
    ("phpmyadmin", ["/usr/share/phpmyadmin", "/usr/share/php"], True, 500),
    ("usr-bin", ["/usr/bin"], False, 300),
    ("usr-sbin", ["/usr/sbin"], False, 50),
    ("python3", ["/usr/lib/python3"], False, 200),
    ("python-stdlib", sorted(glob.glob("/usr/lib/python3.[0-9]*")), False, 500),
    ("perl", sorted(glob.glob("/usr/share/perl*")), False, 200),
    ("shared-libraries", ["/usr/lib/x86_64-linux-gnu"], False, 300),
]

_rules: yara_x.Rules | None = None


def _init(serialized: bytes) -> None:
    global _rules
    _rules = rules.load_serialized(serialized)


def _files(roots: list[str]) -> Iterator[str]:
    for root in roots:
        for directory, _dirs, names in os.walk(root):
            for name in names:
                yield os.path.join(directory, name)


def _scan(paths: list[str], in_web_root: bool) -> tuple[int, list[str]]:
    """Scan ``paths`` as the scanner would (globals per file); return how many were read and what matched."""
    assert _rules is not None
    scanner = yara_x.Scanner(_rules)
    scanner.set_global("in_web_root", in_web_root)
    read = 0
    found: list[str] = []
    for path in paths:
        try:
            info = os.stat(path)
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE:
                continue
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError:  # vanished, or unreadable: not this test's business
            continue
        read += 1
        name = os.path.basename(path)
        scanner.set_global("file_name", name)
        scanner.set_global("extension", os.path.splitext(name)[1][1:].lower())
        for match in scanner.scan(data).matching_rules:
            shown = [f"{p.identifier}={data[m.offset:m.offset + min(m.length, 100)]!r}"
                     for p in match.patterns for m in p.matches[:1]]
            found.append(f"{path}: {match.namespace}.{match.identifier} {' '.join(shown)}")
    return read, found


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    serialized = rules.load().serialized()
    with ProcessPoolExecutor(WORKERS, initializer=_init, initargs=(serialized,)) as executor:
        yield executor


@pytest.mark.parametrize(("roots", "in_web_root", "fewest"), [t[1:] for t in TREES], ids=[t[0] for t in TREES])
def test_clean_tree_has_no_match(pool: ProcessPoolExecutor, roots: list[str], in_web_root: bool, fewest: int) -> None:
    missing = [root for root in roots if not os.path.isdir(root)]
    if not roots or missing:
        pytest.skip(reason=f"{', '.join(missing) or 'the tree'} is not installed "
                           "(scripts/install-system-deps.sh test installs wordpress and phpmyadmin)")
    paths = list(_files(roots))
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    read = 0
    found: list[str] = []
    for count, matches in pool.map(_scan, chunks, [in_web_root] * len(chunks)):
        read += count
        found += matches
    assert read >= fewest, f"only {read} files read under {roots}"
    assert found == [], "clean files matched:\n" + "\n".join(found)
