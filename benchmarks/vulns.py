"""How fast `hostguard vulns match` answers a 3,000-package inventory against 100,000 OSV records.

Generates (seeded, in a temp dir) an OSV copy as osv.dev exports it — one ``all.zip`` per base ecosystem:
Debian (Debian:11 and Debian:12 records, +debNNuM fixes, epochs, ~bpo), PyPI, npm (SEMVER ranges, pre-releases)
and Alpine (-rN); ranges with introduced/fixed, last_affected, limit, several ranges and affected entries,
versions lists, withdrawn records, CVSS vectors — and a 3,000-package inventory (Debian:12 source packages,
PyPI, npm, Alpine:v3.19), most of them named in the records. Then times, in fresh processes:

* the index build (`hostguard vulns update --db DIR`), with the process's peak RSS;
* `hostguard vulns match --db DIR --packages FILE` warm (index built, DIR unchanged): the whole command and the
  matching alone (in-process, ``AdvisoryIndex.match_many``), with the command's peak RSS;
* for comparison, the in-memory path the index replaces (``osv.load`` + ``match.Index``).

Targets (issue 13): matching warm < 1 s, RSS < 300 MB.
``--layout dir`` writes the same records as one ``<ID>.json`` file each (the other layout osv.dev's exports
come in): the index build reads 100,000 files, and a warm match must still see that the copy is unchanged.
Run: .venv/bin/python benchmarks/vulns.py [--records N] [--packages N] [--layout zip|dir] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from typing import Any

MIX = (("Debian", 0.40), ("PyPI", 0.25), ("npm", 0.25), ("Alpine", 0.10))
NAMES_PER_ECOSYSTEM = {"Debian": 9000, "PyPI": 6000, "npm": 8000, "Alpine": 2000}
INVENTORY_SHARE = {"Debian": 1500, "PyPI": 700, "npm": 600, "Alpine": 200}
CVSS = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"


def _version(rand: random.Random, base: str) -> str:
    major, minor, patch = rand.randrange(6), rand.randrange(20), rand.randrange(30)
    if base == "Debian":
        epoch = "1:" if rand.random() < 0.05 else ""
        return f"{epoch}{major}.{minor}.{patch}-{rand.randrange(1, 6)}"
    if base == "PyPI":
        return f"{major}.{minor}.{patch}" + rand.choice(["", "", "", "rc1", ".post1", "a2"])
    if base == "npm":
        return f"{major}.{minor}.{patch}" + rand.choice(["", "", "", "-beta.1", "-rc.2"])
    return f"{major}.{minor}.{patch}-r{rand.randrange(0, 5)}"


def _name(base: str, i: int) -> str:
    return {"Debian": f"libsrc{i}", "PyPI": f"Py_Pkg.{i}", "npm": f"@scope/pkg{i}" if i % 7 == 0 else f"pkg{i}",
            "Alpine": f"apk{i}"}[base]


def _affected(rand: random.Random, base: str) -> dict[str, Any]:
    ecosystem = {"Debian": rand.choice(["Debian:12", "Debian:12", "Debian:11"]), "Alpine": "Alpine:v3.19"}.get(base, base)
    name = _name(base, int(NAMES_PER_ECOSYSTEM[base] * rand.random() ** 1.5))  # some names far more often
    ranges = []
    for _ in range(rand.choice([1, 1, 1, 2, 3])):
        low, high = sorted((_version(rand, base), _version(rand, base)))
        if base == "Debian" and ecosystem == "Debian:12" and rand.random() < 0.5:
            high = f"{low}+deb12u{rand.randrange(1, 5)}"
        kind = rand.random()
        events: list[dict[str, str]] = [{"introduced": "0" if rand.random() < 0.6 else low}]
        if kind < 0.75:
            events.append({"fixed": high})
        elif kind < 0.9:
            events.append({"last_affected": high})
        elif kind < 0.95:
            events.append({"limit": high})
        ranges.append({"type": "SEMVER" if base == "npm" else "ECOSYSTEM", "events": events})
    entry: dict[str, Any] = {"package": {"ecosystem": ecosystem, "name": name}, "ranges": ranges}
    if rand.random() < 0.15:
        entry["versions"] = [_version(rand, base) for _ in range(rand.randrange(1, 20))]
    return entry


class _Files:
    """The directory layout's writer: ``<Ecosystem>/<ID>.json`` files, with a zip archive's ``writestr``."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def writestr(self, name: str, data: str) -> None:
        with open(os.path.join(self.directory, name), "w", encoding="utf-8") as f:
            f.write(data)

    def close(self) -> None:
        pass


def generate(directory: str, count: int, seed: int = 13, layout: str = "zip") -> None:
    """``count`` records in ``directory/<Ecosystem>/all.zip``, or as ``<ID>.json`` files with layout "dir"
    (deterministic: seeded, the same records either way)."""
    rand = random.Random(seed)
    for base, _ in MIX:
        os.makedirs(os.path.join(directory, base), exist_ok=True)
    archives: dict[str, Any] = {
        base: zipfile.ZipFile(os.path.join(directory, base, "all.zip"), "w", zipfile.ZIP_DEFLATED) if layout == "zip"
        else _Files(os.path.join(directory, base)) for base, _ in MIX}
    weights = [share for _, share in MIX]
    for i in range(count):
        base = rand.choices([b for b, _ in MIX], weights)[0]
        rec: dict[str, Any] = {
            "schema_version": "1.6.0", "id": f"{base.upper()}-BENCH-{i}", "modified": "2024-06-01T00:00:00Z",
            "aliases": [f"CVE-2099-{i}"] if rand.random() < 0.7 else [], "summary": f"benchmark advisory {i}",
            "affected": [_affected(rand, base) for _ in range(rand.choice([1, 1, 1, 1, 2]))],
        }
        if rand.random() < 0.3:
            rec["severity"] = [{"type": "CVSS_V3", "score": CVSS}]
        if rand.random() < 0.01:
            rec["withdrawn"] = "2024-07-01T00:00:00Z"
        archives[base].writestr(f"{rec['id']}.json", json.dumps(rec))
    for archive in archives.values():
        archive.close()


def inventory(path: str, seed: int = 17, total: int = 3000) -> int:
    """A JSON Lines inventory of ``total`` packages (shares as INVENTORY_SHARE, scaled)."""
    rand = random.Random(seed)
    scale = total / sum(INVENTORY_SHARE.values())
    lines = []
    for base, share in INVENTORY_SHARE.items():
        ecosystem = {"Debian": "Debian:12", "Alpine": "Alpine:v3.19"}.get(base, base)
        for i in rand.sample(range(NAMES_PER_ECOSYSTEM[base]), round(share * scale)):
            name = _name(base, i)
            lines.append(json.dumps({"ecosystem": ecosystem, "name": name.lower() if base == "PyPI" else name,
                                     "version": _version(rand, base)}))
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return len(lines)


def run(argv: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, stdout) of one hostguard command in a fresh process (GNU time's maxrss via
    wait4, so each command's own peak is reported, not the largest child's so far)."""
    with tempfile.TemporaryFile("w+") as out_file, tempfile.TemporaryFile("w+") as err_file:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "hostguard.cli", *argv], stdout=out_file, stderr=err_file)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        took = time.perf_counter() - started
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {err}")
    return took, usage.ru_maxrss / 1024, out


def in_process(source: str, cache: str, packages_file: str) -> str:
    """Matching alone, warm, and the in-memory path, timed in a child (so the parent's imports do not count)."""
    code = f"""
import json, resource, time
from hostguard.cli.vulns import _read_packages_file
from hostguard.vulns.index import open_index
packages = _read_packages_file({packages_file!r})
started = time.perf_counter()
idx = open_index({cache!r}, {source!r})
opened = time.perf_counter() - started
assert not idx.built
started = time.perf_counter()
results = idx.match_many(packages)
took = time.perf_counter() - started
hits = sum(bool(r.matches) for r in results)
print(json.dumps({{"open": opened, "match": took, "queries": idx.queries, "rows": idx.rows_read, "hit": hits,
                  "advisories": sum(len(r.matches) for r in results),
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def in_memory(source: str, packages_file: str) -> str:
    code = f"""
import json, resource, time
from hostguard.cli.vulns import _read_packages_file
from hostguard.vulns.match import Index
from hostguard.vulns.osv import load
packages = _read_packages_file({packages_file!r})
started = time.perf_counter()
db = load({source!r}, {{eco for eco, _, _ in packages}})
index = Index(db.vulns.values())
results = index.match_many(packages)
print(json.dumps({{"seconds": time.perf_counter() - started, "hit": sum(bool(r.matches) for r in results),
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--packages", type=int, default=3000)
    parser.add_argument("--keep", metavar="DIR", help="write the copy, inventory and state here (and keep them)")
    parser.add_argument("--no-compare", action="store_true", help="skip the in-memory path (slow, large)")
    parser.add_argument("--layout", choices=("zip", "dir"), default="zip",
                        help="the copy as all.zip per ecosystem (default) or as one <ID>.json file per record")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        base = args.keep or scratch
        source, state = os.path.join(base, "osv"), os.path.join(base, "state")
        packages_file = os.path.join(base, "packages.jsonl")
        started = time.perf_counter()
        generate(source, args.records, layout=args.layout)
        count = inventory(packages_file, total=args.packages)
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(source) for f in fs)
        what = "all.zip" if args.layout == "zip" else "<ID>.json files"
        print(f"generated {args.records} records ({size / 1e6:.0f} MB of {what}) and {count} packages "
              f"in {time.perf_counter() - started:.1f} s")

        took, rss, out = run(["--state", state, "vulns", "update", "--db", source, "--format", "json"])
        summary = json.loads(out)
        db_size = os.path.getsize(os.path.join(state, "cache", "advisories.db"))
        print(f"index build (vulns update --db): {took:.1f} s, peak RSS {rss:.0f} MB; {summary['records']} records, "
              f"{summary['packages']} packages, {db_size / 1e6:.0f} MB on disk")

        figures = []
        for _ in range(3):
            took, rss, out = run(["--state", state, "vulns", "match", "--db", source, "--packages", packages_file])
            figures.append((took, rss))
        lines = out.count("\n")
        took, rss = min(figures)
        print(f"vulns match warm (whole command, {lines} lines out): {took:.2f} s (target < 1 s), peak RSS {rss:.0f} MB "
              f"(target < 300 MB)")
        inner = json.loads(in_process(source, os.path.join(state, "cache"), packages_file))
        print(f"  of which: open + identity check {inner['open']:.3f} s, match_many {inner['match']:.3f} s "
              f"({inner['queries']} queries, {inner['rows']} rows read; {inner['hit']} packages affected, "
              f"{inner['advisories']} advisories); in-process peak RSS {inner['rss']:.0f} MB")
        if not args.no_compare:
            memory = json.loads(in_memory(source, packages_file))
            assert memory["hit"] == inner["hit"], (memory, inner)
            print(f"in-memory path it replaces (osv.load + match.Index): {memory['seconds']:.1f} s, "
                  f"peak RSS {memory['rss']:.0f} MB (same {memory['hit']} packages affected)")


if __name__ == "__main__":
    main()
