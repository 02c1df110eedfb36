"""Every check with a fixture: its hit tree yields exactly the expected targets, the clean tree none.

This is the registry meta-test's other half: test_registry.py demands the fixtures exist.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hostguard.config import defaults
from hostguard.engine.facts import Facts
from hostguard.engine.registry import all_checks
from hostguard.engine.runner import run_check
from hostguard.host.base import RootHost
from tests.conftest import HITS, build_tree, expected_targets

FIXTURE_IDS = sorted(p.name for p in HITS.iterdir() if p.is_dir())
SPECS = {s.id: s for s in all_checks()}


def _run(tree: Path, check_id: str) -> list[dict[str, object]]:
    config = defaults()
    config["weak_passwords"]["budget_seconds"] = 0  # the guaranteed floor only: fixtures stay fast
    config["weak_passwords"]["floor"] = 20
    facts = Facts(RootHost(str(tree)), config, extra={"known_accounts": None})
    found, skipped = run_check(SPECS[check_id], facts, config)
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
