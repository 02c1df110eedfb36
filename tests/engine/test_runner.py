"""The runner owns loops and budgets: per-item errors are recorded per item, budgets stop loops, a failing
check keeps what it found, post-scan hooks run only for selected families."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from hostguard.config import Config, build, setting
from hostguard.engine.context import Context
from hostguard.engine.facts import Fact, Facts
from hostguard.engine.registry import CheckSpec, Family, Registry, check
from hostguard.engine.runner import ScanEnd, run_check, run_scan
from hostguard.findings import Finding, SkipReason
from hostguard.host.base import RootHost, Unavailable
from hostguard.remediation import Action, Remediation
from hostguard.store.state import StateStore


@dataclass(frozen=True)
class Item:
    name: str

    def label(self) -> str:
        return f"item {self.name}"


ITEMS: Fact[tuple[Item, ...]] = Fact("items", lambda host: (Item("a"), Item("b"), Item("c")))


@dataclass(frozen=True)
class DemoConfig:
    """[demo]"""

    budget: float = setting(60.0, "seconds", min=0)


def _spec(func: Any) -> CheckSpec:
    return func.__check__  # type: ignore[no-any-return]


def _facts(config: Config | None = None) -> Facts:
    return Facts(RootHost("/"), config or build({}, {"demo": DemoConfig}))


def _targets(found: list[Finding]) -> list[str]:
    return [str(f.target["path"]) for f in found]


@check(id="demo.each", severity="low", summary="per item", each=ITEMS)
def per_item(item: Item, ctx: Context) -> Iterator[Finding]:
    """Fails on item b, cannot know item c, reports the others."""
    if item.name == "b":
        raise ValueError("cannot parse b")
    if item.name == "c":
        raise Unavailable(SkipReason.NOT_ROOT, "c is root's")
    yield ctx.finding(f"item {item.name}", {"kind": "path", "path": item.name})


def test_an_item_that_raises_is_skipped_by_name_and_the_others_are_kept() -> None:
    found, skipped = run_check(_spec(per_item), _facts())
    assert _targets(found) == ["a"]
    assert [(s.item, s.reason, s.detail) for s in skipped] == [
        ("item b", SkipReason.ERROR, "ValueError: cannot parse b"),
        ("item c", SkipReason.NOT_ROOT, "c is root's")]
    assert skipped[0].to_dict()["item"] == "item b"


@check(id="demo.halfway", severity="low", summary="fails after one finding")
def halfway(ctx: Context) -> Iterator[Finding]:
    """Yields one finding, then hits a bug."""
    yield ctx.finding("first", {"kind": "path", "path": "first"})
    raise KeyError("boom")


def test_a_check_that_fails_half_way_keeps_what_it_found() -> None:
    found, skipped = run_check(_spec(halfway), _facts())
    assert _targets(found) == ["first"]
    assert [(s.check, s.reason, s.detail, s.item) for s in skipped] == [
        ("demo.halfway", SkipReason.ERROR, "KeyError: 'boom'", "")]


def _budget(config: Config) -> float:
    return config[DemoConfig].budget


@check(id="demo.budgeted", severity="low", summary="budgeted", each=ITEMS, budget=_budget)
def budgeted(item: Item, ctx: Context) -> Iterator[Finding]:
    """Reports every item it gets to, and the deadline it saw."""
    yield ctx.finding(f"item {item.name}", {"kind": "path", "path": item.name},
                      evidence={"deadline_set": ctx.deadline is not None})


def test_budget_comes_from_the_config_and_sets_the_deadline() -> None:
    found, skipped = run_check(_spec(budgeted), _facts())
    assert _targets(found) == ["a", "b", "c"] and skipped == []
    assert all(f.evidence["deadline_set"] for f in found)


def test_a_spent_budget_stops_the_loop_and_says_how_many_items_were_left() -> None:
    found, skipped = run_check(_spec(budgeted), _facts(build({"demo": {"budget": 0}}, {"demo": DemoConfig})))
    assert found == []
    assert [(s.reason, s.detail) for s in skipped] == [
        (SkipReason.BUDGET, "3 of 3 items not checked: time budget of 0 s spent")]


def test_no_budget_means_no_deadline() -> None:
    seen: list[float | None] = []

    @check(id="demo.free", severity="low", summary="free")
    def free(ctx: Context) -> Iterator[Finding]:
        """Records its deadline."""
        seen.append(ctx.deadline)
        return iter(())

    run_check(_spec(free), _facts())
    assert seen == [None]


def test_cancel_stops_a_per_item_loop() -> None:
    cancel = threading.Event()
    cancel.set()
    found, skipped = run_check(_spec(per_item), _facts(), cancel=cancel)
    assert found == [] and [(s.reason, s.detail) for s in skipped] == [
        (SkipReason.BUDGET, "3 of 3 items not checked: cancelled")]


def test_reading_an_undeclared_fact_is_an_error_recorded_as_skipped() -> None:
    @check(id="demo.sneaky", severity="low", summary="reads what it did not declare")
    def sneaky(ctx: Context) -> Iterator[Finding]:
        """Reads ITEMS without declaring it."""
        ctx.fact(ITEMS)
        return iter(())

    found, skipped = run_check(_spec(sneaky), _facts())
    assert found == [] and "without declaring it in needs" in skipped[0].detail


# -- run_scan with a registry made here: hooks and selection ------------------------------------------------

def _registry(hook_log: list[str], fail: bool = False) -> Registry:
    def remember(end: ScanEnd) -> None:
        if fail:
            raise RuntimeError("disk full")
        hook_log.append(end.host.hostname)

    one, two = ModuleType("hg_one"), ModuleType("hg_two")
    one.FAMILY = Family("one", "first", after_scan=remember)
    two.FAMILY = Family("two", "second", DemoConfig)

    @check(id="one.a", severity="high", summary="a")
    def a(ctx: Context) -> Iterator[Finding]:
        """Always reports one finding."""
        yield ctx.finding("a", {"kind": "path", "path": "/a"})

    @check(id="two.b", severity="low", summary="b", aliases=("two.old_b",))
    def b(ctx: Context) -> Iterator[Finding]:
        """Always reports one finding."""
        yield ctx.finding("b", {"kind": "path", "path": "/b"})

    a.__module__, b.__module__ = "hg_one", "hg_two"
    one.a, two.b = a, b
    return Registry.from_modules([one, two])


def test_post_scan_hook_runs_only_for_selected_families(tmp_path: Path, clean_tree: Path) -> None:
    log: list[str] = []
    registry = _registry(log)
    config = build({}, registry.schema())
    state = StateStore(str(tmp_path / "s"))
    try:
        run_scan(RootHost(str(clean_tree)), config, state, only=["two"], registry=registry)
        assert log == []
        outcome = run_scan(RootHost(str(clean_tree)), config, state, only=["one"], registry=registry)
        assert log == [RootHost(str(clean_tree)).hostname()] and log != [""]
        assert [r.id for r in outcome.report.rules] == ["one.a"]
    finally:
        state.close()


def test_a_failing_hook_is_reported_and_findings_stand(tmp_path: Path, clean_tree: Path) -> None:
    registry = _registry([], fail=True)
    state = StateStore(str(tmp_path / "s"))
    try:
        outcome = run_scan(RootHost(str(clean_tree)), build({}, registry.schema()), state, registry=registry)
    finally:
        state.close()
    assert [f.id for f in outcome.report.findings] == ["one.a", "two.b"]
    assert [(s.check, s.detail) for s in outcome.report.skipped] == [("one (after scan)", "RuntimeError: disk full")]


@pytest.mark.parametrize("rules, kept", [
    ([{"id": "two.old_b"}], ["one.a"]),                     # an alias names the check it was renamed to
    ([{"id": "one.*"}], ["two.b"]),
    ([{"id": "one.a", "fingerprint": "0" * 32}], ["one.a", "two.b"]),
])
def test_suppression_resolves_aliases_and_families(tmp_path: Path, clean_tree: Path, rules: list[dict[str, str]],
                                                   kept: list[str]) -> None:
    registry = _registry([])
    config = build({"suppress": {"rules": rules}}, registry.schema())
    state = StateStore(str(tmp_path / "s"))
    try:
        outcome = run_scan(RootHost(str(clean_tree)), config, state, registry=registry)
    finally:
        state.close()
    assert sorted(f.id for f in outcome.report.findings) == kept
    assert outcome.suppressed == 2 - len(kept)


WORKERS: Fact[tuple[Item, ...]] = Fact("workers", lambda host: (Item("w1"), Item("w2"), Item("w3"), Item("other")))


@check(id="demo.grouped", severity="medium", summary="same target from several items", each=WORKERS)
def same_target(item: Item, ctx: Context) -> Iterator[Finding]:
    """Workers of one program share a target (no item id in it); the second worker is worse."""
    program = "other" if item.name == "other" else "miner"
    yield ctx.finding(f"{program} runs", {"kind": "process", "exe": program},
                      severity="high" if item.name == "w2" else None, evidence={"pid": item.name},
                      remediation=Remediation("kill it", (Action("kill", (("pid", item.name),)),)))


def test_findings_of_one_target_are_merged_into_the_first() -> None:
    """One fingerprint is one finding: the three workers' findings become one, with the worst severity,
    every worker's evidence and one kill step each; the other program's finding stays on its own."""
    found, skipped = run_check(_spec(same_target), _facts())
    assert skipped == []
    assert [f.target["exe"] for f in found] == ["miner", "other"]
    miner, other = found
    assert miner.title == "miner runs (and 2 more like it)" and str(miner.severity) == "high"
    assert miner.evidence["pid"] == "w1" and miner.evidence["more_count"] == 2
    assert [e["pid"] for e in miner.evidence["more"]] == ["w2", "w3"]
    assert [dict(s.args)["pid"] for s in miner.remediation.steps if isinstance(s, Action)] == ["w1", "w2", "w3"]
    assert len(miner.remediation.steps) == 3
    assert other.title == "other runs" and "more" not in other.evidence and str(other.severity) == "medium"
