"""The registry meta-test: every check is documented and has a hit and a non-hit test."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from hostguard.engine.registry import FAMILIES, RegistryError, all_checks, check, select
from tests.conftest import HITS

ROOT = Path(__file__).parent.parent
LIVE = tomllib.loads((Path(__file__).parent / "check_tests.toml").read_text())


def _test_exists(ref: str) -> bool:
    path, _, name = ref.partition("::")
    file = ROOT / path
    if not file.is_file():
        return False
    tree = ast.parse(file.read_text())
    return any(isinstance(n, ast.FunctionDef) and n.name == name for n in ast.walk(tree))


@pytest.mark.parametrize("spec", all_checks(), ids=lambda s: s.id)
def test_check_is_documented_and_tested(spec) -> None:
    assert len(spec.doc) > 30, f"{spec.id} needs a docstring saying what it looks at and why"
    assert spec.title
    has_fixture = (HITS / spec.id / "expect.toml").is_file()
    live_tests = LIVE.get(spec.id, [])
    assert has_fixture or live_tests, f"{spec.id} has neither tests/fixtures/hosts/hits/{spec.id} nor live tests"
    for ref in live_tests:
        assert _test_exists(ref), f"{spec.id}: live test {ref} does not exist"


def test_every_fixture_belongs_to_a_check() -> None:
    ids = {s.id for s in all_checks()}
    stray = [p.name for p in HITS.iterdir() if p.is_dir() and p.name not in ids]
    assert stray == []


def test_ids_are_unique_and_prefixed_by_family() -> None:
    specs = all_checks()
    assert len({s.id for s in specs}) == len(specs)
    assert all(s.id.startswith(s.family + ".") and s.family in FAMILIES for s in specs)


def test_declaring_a_check_with_a_foreign_prefix_is_an_error() -> None:
    with pytest.raises(RegistryError):
        check(id="ssh.thing", family="accounts", severity="low", title="x")


def test_unknown_family_is_rejected() -> None:
    with pytest.raises(RegistryError, match="unknown family nope"):
        select(["nope"])
