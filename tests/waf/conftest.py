"""Engines the WAF's tests share: each is built once for the run (loading CRS takes a third of a second)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hostguard.waf.engine import Engine
from hostguard.waf.ruleset import WafSettings, assemble
from tests.waf.test_engine import _need_library


@pytest.fixture(scope="session")
def waf() -> Iterator[Engine]:
    """The whole ruleset a site gets by default: CRS with hostguard's base config, rules and corrections."""
    _need_library()
    with Engine(text=assemble(WafSettings())) as engine:
        yield engine


@pytest.fixture(scope="session")
def plain() -> Iterator[Engine]:
    """CRS at paranoia level 1 without hostguard's own rules and corrections (what they are measured against)."""
    _need_library()
    with Engine(text=assemble(WafSettings(own_rules=False))) as engine:
        yield engine
