"""The ecosystems' own tools as oracles: each takes a batch of version pairs and answers -1/0/1 per pair.

One process per batch (dpkg: one shell loop), so a few hundred pairs cost well under a second.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import IN_CI

_DPKG_LOOP = r"""
while read -r a b; do
  if dpkg --compare-versions "$a" lt "$b"; then echo -1
  elif dpkg --compare-versions "$a" eq "$b"; then echo 0
  else echo 1; fi
done
"""


def need(tool: str) -> str:
    """The tool's path, or a skip naming what to install (a skip fails the run under CI)."""
    path = shutil.which(tool)
    if path is None:
        reason = f"{tool} is not installed: scripts/install-system-deps.sh test"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def dpkg_compare(pairs: list[tuple[str, str]]) -> list[int]:
    """``dpkg --compare-versions`` on each pair (versions hold no white space)."""
    need("dpkg")
    out = subprocess.run(["sh", "-c", _DPKG_LOOP], input="".join(f"{a} {b}\n" for a, b in pairs),
                         capture_output=True, text=True, check=True).stdout
    return [int(x) for x in out.split()]


def dpkg_flags(version: str) -> bool:
    """Whether dpkg warns about or refuses the version's syntax."""
    need("dpkg")
    # second, so that a version starting with "-" is not read as an option; 0 and 1 are answers, 2 an error
    run = subprocess.run(["dpkg", "--compare-versions", "1", "lt", version], capture_output=True, text=True)
    return run.returncode not in (0, 1) or "bad syntax" in run.stderr


# Run by the system python (Debian's python3-rpm is not importable from a virtualenv): labelCompare on
# each JSON line [a, b], split as OSV writes RPM versions ([epoch:]version[-release]).
_RPM_ORACLE = r"""
import json, sys
import rpm

def evr(text):
    epoch = None
    if ":" in text:
        epoch, text = text.split(":", 1)
    release = None
    if "-" in text:
        text, release = text.rsplit("-", 1)
    return (epoch, text, release)

for line in sys.stdin:
    a, b = json.loads(line)
    print(rpm.labelCompare(evr(a), evr(b)))
"""


def rpm_compare(pairs: list[tuple[str, str]]) -> list[int]:
    """rpm's ``labelCompare`` (python3-rpm, run by /usr/bin/python3) on each pair."""
    probe = subprocess.run(["/usr/bin/python3", "-c", "import rpm"], capture_output=True)
    if probe.returncode != 0:
        reason = "python3-rpm is not installed: scripts/install-system-deps.sh test"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    out = subprocess.run(["/usr/bin/python3", "-c", _RPM_ORACLE], input="".join(json.dumps(p) + "\n" for p in pairs),
                         capture_output=True, text=True, check=True).stdout
    return [int(x) for x in out.split()]


MAVEN_JAR = Path("/usr/share/java/maven-artifact-3.x.jar")  # Debian's libmaven3-core-java (Maven 3.8.7)


def maven_compare(pairs: list[tuple[str, str]]) -> list[int]:
    """Maven's own ComparableVersion (its main compares each argument with the one before)."""
    need("java")
    if not MAVEN_JAR.exists():
        reason = f"{MAVEN_JAR} is missing (libmaven3-core-java): scripts/install-system-deps.sh test"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    args = [v for pair in pairs for v in pair]
    out = subprocess.run(["java", "-cp", str(MAVEN_JAR), "org.apache.maven.artifact.versioning.ComparableVersion",
                          *args], capture_output=True, text=True, check=True).stdout
    results = [line.split() for line in out.splitlines() if line.startswith("   ")]
    assert len(results) == len(args) - 1, out
    ops = {"<": -1, "==": 0, ">": 1}
    return [ops[results[2 * i][1]] for i in range(len(pairs))]


_SEMVER_ORACLE = r"""
const semver = require(process.argv[1]);
const lines = require('fs').readFileSync(0, 'utf8').split('\n').filter(Boolean);
for (const line of lines) {
  const [a, b] = JSON.parse(line);
  let r;
  try { r = String(semver.compare(new semver.SemVer(a), new semver.SemVer(b))); } catch (e) { r = 'invalid'; }
  console.log(r);
}
"""


def node_semver(module_dir: Path, pairs: list[tuple[str, str]]) -> list[str]:
    """node-semver's ``compare`` (strict parsing) on each pair: "-1", "0", "1" or "invalid"."""
    out = subprocess.run([need("node"), "-e", _SEMVER_ORACLE, str(module_dir)],
                         input="".join(json.dumps(p) + "\n" for p in pairs),
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def install_node_semver(dest: Path) -> Path:
    """``npm install semver`` into ``dest`` (from the npm registry); the module's directory."""
    npm = need("npm")
    run = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(dest), "semver@7"],
                         capture_output=True, text=True, timeout=300)
    module = dest / "node_modules" / "semver"
    if run.returncode != 0 or not module.exists():
        reason = f"npm could not install semver from the registry: {run.stderr.strip()[-300:]}"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return module


COMPOSER_SEMVER = Path("/usr/share/php/Composer/Semver/autoload.php")  # Debian's php-composer-semver

# Composer's own order: VersionParser::normalize, then the library's Comparator (which ends in PHP's
# version_compare); a version normalize throws on, or a branch (dev-...), is "invalid"
_COMPOSER_ORACLE = r"""
require getenv('COMPOSER_SEMVER');
use Composer\Semver\Comparator;
use Composer\Semver\VersionParser;
$parser = new VersionParser();
function norm($parser, $v) {
    try { $n = $parser->normalize($v); } catch (\Exception $e) { return null; }
    return strpos($n, 'dev-') === 0 ? null : $n;
}
while (($line = fgets(STDIN)) !== false) {
    $pair = json_decode($line);
    if (count($pair) === 1) { $n = norm($parser, $pair[0]); echo $n === null ? "invalid\n" : $n . "\n"; continue; }
    $a = norm($parser, $pair[0]); $b = norm($parser, $pair[1]);
    if ($a === null || $b === null) { echo "invalid\n"; continue; }
    echo Comparator::lessThan($a, $b) ? "-1\n" : (Comparator::equalTo($a, $b) ? "0\n" : "1\n");
}
"""


def _composer(lines: list[list[str]]) -> list[str]:
    php = need("php")
    if not COMPOSER_SEMVER.exists():
        reason = f"{COMPOSER_SEMVER} is missing (php-composer-semver): scripts/install-system-deps.sh test"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    out = subprocess.run([php, "-r", _COMPOSER_ORACLE], input="".join(json.dumps(v) + "\n" for v in lines),
                         capture_output=True, text=True, check=True, env={"COMPOSER_SEMVER": str(COMPOSER_SEMVER)}).stdout
    return out.split("\n")[:len(lines)]


def composer_compare(pairs: list[tuple[str, str]]) -> list[str]:
    """Composer's comparison of each pair (composer/semver on PHP): "-1", "0", "1" or "invalid"."""
    return _composer([[a, b] for a, b in pairs])


def composer_normalize(versions: list[str]) -> list[str]:
    """Composer's ``VersionParser::normalize`` of each version ("invalid" where it throws or names a branch)."""
    return _composer([[v] for v in versions])
