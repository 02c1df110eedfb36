"""Every check with fixtures: its hit tree yields the expected targets, its near-miss tree and the clean
tree none.

This is the registry meta-test's other half: test_registry.py demands the fixtures exist.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hostguard.host.base import RootHost
from tests.conftest import HITS, MISSES, build_tree, expected_targets, run_one

FIXTURE_IDS = sorted(p.name for p in HITS.iterdir() if p.is_dir())
MISS_IDS = sorted(p.name for p in MISSES.iterdir() if p.is_dir())


def _run(tree: Path, check_id: str) -> list[dict[str, object]]:
    found, skipped = run_one(check_id, RootHost(str(tree)))
    assert not [s for s in skipped if s.reason == "error"], skipped
    return [dict(f.target) for f in found]


@pytest.mark.parametrize("check_id", FIXTURE_IDS)
def test_hit_tree_reports_expected_targets(tmp_path: Path, check_id: str) -> None:
    tree = build_tree(tmp_path / "host", HITS / check_id)
    targets = _run(tree, check_id)
    for want in expected_targets(check_id):
        assert any(all(t.get(k) == v for k, v in want.items()) for t in targets), (want, targets)


@pytest.mark.parametrize("check_id", FIXTURE_IDS)
def test_clean_tree_has_no_finding(clean_tree: Path, check_id: str) -> None:
    assert _run(clean_tree, check_id) == []


@pytest.mark.parametrize("check_id", MISS_IDS)
def test_near_miss_tree_stays_quiet(tmp_path: Path, check_id: str) -> None:
    tree = build_tree(tmp_path / "host", MISSES / check_id)
    assert _run(tree, check_id) == []


def test_key_file_named_with_percent_h_is_the_default_file(clean_tree: Path) -> None:
    """`AuthorizedKeysFile %h/.ssh/authorized_keys` names the default file: its keys are not "unusual"."""
    (clean_tree / "etc/ssh/sshd_config.d/20-keys.conf").write_text("AuthorizedKeysFile %h/.ssh/authorized_keys\n")
    keys = clean_tree / "home/alice/.ssh/authorized_keys"
    keys.parent.mkdir(parents=True, exist_ok=True)
    keys.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostguardTestKeyOnlyNotARealOne alice@laptop.test\n")
    assert _run(clean_tree, "accounts.ssh_key_unusual") == []
    (clean_tree / "etc/ssh/sshd_config.d/20-keys.conf").write_text("AuthorizedKeysFile /etc/ssh/keys/%u\n")
    (clean_tree / "etc/ssh/keys").mkdir()
    (clean_tree / "etc/ssh/keys/alice").write_text(keys.read_text())
    assert [t["path"] for t in _run(clean_tree, "accounts.ssh_key_unusual")] == ["/etc/ssh/keys/alice"]
