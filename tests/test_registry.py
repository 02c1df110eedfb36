"""The registry meta-test: every check is documented and has a hit and a near-miss test; the registry
validates declarations; a new family is found without listing it anywhere."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

from hostguard.config import build, plain
from hostguard.engine.facts import Fact, config_input
from hostguard.engine.registry import Family, Registry, RegistryError, check, default_registry, family_modules
from tests.conftest import HITS, MISSES

ROOT = Path(__file__).parent.parent
LIVE = tomllib.loads((Path(__file__).parent / "check_tests.toml").read_text())
REGISTRY = default_registry()


def _overlay_problems(fixtures: Path, check_id: str, side: str) -> list[str]:
    """What is wrong with one hit or near-miss overlay (empty when it is usable)."""
    overlay = fixtures / check_id
    expect = tomllib.loads((overlay / "expect.toml").read_text())
    problems = []
    if not [p for p in overlay.rglob("*") if p.is_file() and p.name != "expect.toml"]:
        problems.append(f"{overlay} changes no file of the clean tree")
    targets = expect.get("targets")
    if not isinstance(targets, list) or not all(isinstance(t, dict) and "kind" in t for t in targets):
        problems.append(f"{overlay}/expect.toml needs [[targets]] tables, each with kind = ...")
    elif side == "hit" and not targets:
        problems.append(f"{overlay}/expect.toml names no target: a hit must say what the check reports")
    elif side == "miss" and targets:
        problems.append(f"{overlay}/expect.toml: a near miss reports nothing (targets = [])")
    if side == "miss" and not str(expect.get("why", "")).strip():
        problems.append(f'{overlay}/expect.toml: say why this is a near miss (why = "...")')
    return problems


def _test_exists(ref: str) -> bool:
    path, _, name = ref.partition("::")
    file = ROOT / path
    if not file.is_file():
        return False
    tree = ast.parse(file.read_text())
    return any(isinstance(n, ast.FunctionDef) and n.name == name for n in ast.walk(tree))


@pytest.mark.parametrize("spec", REGISTRY.checks, ids=lambda s: s.id)
def test_check_is_documented_and_has_hit_and_miss(spec) -> None:
    assert len(spec.doc) > 30, f"{spec.id}: write a docstring saying what it looks at and why (it is the documentation)"
    assert spec.summary, f"{spec.id}: give @check a summary="
    live = LIVE.get(spec.id, {})
    for side, fixtures in (("hit", HITS), ("miss", MISSES)):
        has_fixture = (fixtures / spec.id / "expect.toml").is_file()
        if has_fixture:
            assert _overlay_problems(fixtures, spec.id, side) == []
        assert has_fixture or live.get(side), (
            f"{spec.id} has no {side} test: add tests/fixtures/hosts/{fixtures.name}/{spec.id}/ (an overlay of the clean "
            f"tree with expect.toml), or name a live test under [\"{spec.id}\"] {side} = [...] in tests/check_tests.toml")
        for ref in live.get(side, []):
            assert _test_exists(ref), f"{spec.id}: the {side} test {ref} named in tests/check_tests.toml does not exist"


@pytest.mark.parametrize("fixtures", [HITS, MISSES], ids=["hits", "misses"])
def test_every_fixture_belongs_to_a_check(fixtures: Path) -> None:
    ids = {s.id for s in REGISTRY.checks}
    stray = [p.name for p in fixtures.iterdir() if p.is_dir() and p.name not in ids]
    assert stray == [], f"fixture overlays for no check (renamed? add an alias instead): {stray}"


def test_live_test_table_names_only_checks() -> None:
    assert sorted(set(LIVE) - {s.id for s in REGISTRY.checks}) == []


def test_families_are_found_not_listed() -> None:
    names = [m.__name__.rsplit(".", 1)[1] for m in family_modules()]
    assert list(REGISTRY.families) == names
    with_config = [n for n in names if REGISTRY.families[n].config is not None]
    assert list(REGISTRY.schema()) == ["scan", "suppress", "block", "detect", "waf", *with_config]


@pytest.mark.parametrize("section", list(REGISTRY.schema()))
def test_config_defaults_have_their_declared_types(section: str) -> None:
    """A default of the wrong type (``setting("20", ...)`` for an int) would only fail in the middle of a scan."""
    cls = REGISTRY.schema()[section]
    defaults = build({}, REGISTRY.schema()).section_named(section)
    assert build({section: plain(defaults)}, REGISTRY.schema()).section_named(section) == defaults == cls()
    missing_help = [f.name for f in dataclasses.fields(cls) if not f.metadata.get("help")]
    assert missing_help == [], f"[{section}]: give each setting a help text (setting(default, help))"


def test_ids_are_unique_and_prefixed_by_family() -> None:
    specs = REGISTRY.checks
    assert len({s.id for s in specs}) == len(specs)
    assert all(s.id.startswith(s.family + ".") and s.family in REGISTRY.families for s in specs)


def test_unknown_family_or_check_is_rejected() -> None:
    with pytest.raises(RegistryError, match="unknown family nope"):
        REGISTRY.select(["nope"])


def test_only_accepts_check_ids_as_well_as_families() -> None:
    picked = REGISTRY.select(["ssh.default_port", "password_policy"])
    assert {s.id for s in picked} == {"ssh.default_port"} | {s.id for s in REGISTRY.checks
                                                              if s.family == "password_policy"}


def test_a_retired_id_says_why_and_a_suppress_rule_for_it_stays_valid(tmp_path: Path) -> None:
    """firewall.reachability was released and then folded into the per-port findings' evidence: --only names
    the replacement; a [[suppress.rules]] written for it neither breaks the config nor hides another check."""
    from hostguard.engine.suppress import SuppressRule, resolve

    with pytest.raises(RegistryError, match="firewall.reachability was retired: who reaches each port"):
        REGISTRY.select(["firewall.reachability"])
    [rule] = resolve([SuppressRule("firewall.reachability")], REGISTRY.canonical, REGISTRY.families)
    assert rule.id == "firewall.reachability" and REGISTRY.canonical("firewall.port_reachable") != rule.id
    assert "firewall.reachability" not in {s.id for s in REGISTRY.checks}


def test_a_retired_id_cannot_be_a_live_check_or_another_familys() -> None:
    bad = Family("demo", "demo", retired={"other.gone": "moved"})
    module = ModuleType("hostguard_demo_retired")
    module.FAMILY = bad  # type: ignore[attr-defined]
    with pytest.raises(RegistryError, match="retired id other.gone: not a free id of family demo"):
        Registry.from_modules([module])


# -- a family made here, in a temporary module: what adding a family takes --------------------------------

FAMILY_SOURCE = '''
"""Demo family: one fact, one check, one config section."""
from dataclasses import dataclass
from hostguard.config import setting
from hostguard.engine.facts import Fact, config_input
from hostguard.engine.registry import Family, check


@dataclass(frozen=True)
class DemoConfig:
    """[demo]"""
    limit: int = setting(3, "How many is too many.", min=0)


def collect_motd(host, cfg):
    """The message of the day, cut to the configured number of lines."""
    return tuple((host.read_optional("/etc/motd") or "").splitlines()[: cfg.limit + 1])


MOTD = Fact("motd", collect_motd, inputs=(config_input("demo"),))
FAMILY = Family("demo", __doc__, DemoConfig)


@check(id="demo.long_motd", severity="low", summary="Long message of the day", needs=(MOTD,), aliases=("demo.motd",))
def long_motd(ctx):
    """A long motd is noise that hides the warnings people should read."""
    lines = ctx.fact(MOTD)
    if len(lines) > ctx.config[DemoConfig].limit:
        yield ctx.finding("motd is long", {"kind": "path", "path": "/etc/motd"})
'''


def _module(tmp_path: Path, name: str, source: str) -> ModuleType:
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_a_new_family_needs_only_its_own_module(tmp_path: Path, clean_tree: Path) -> None:
    from hostguard.engine.facts import Facts
    from hostguard.engine.runner import run_check
    from hostguard.host.base import RootHost

    demo = _module(tmp_path, "hg_demo_family", FAMILY_SOURCE)
    registry = Registry.from_modules([*family_modules(), demo])
    assert "demo" in registry.families and registry.schema()["demo"] is demo.DemoConfig
    assert [s.id for s in registry.select(["demo.motd"])] == ["demo.long_motd"]  # the alias resolves
    config = build({"demo": {"limit": 1}}, registry.schema())
    (clean_tree / "etc/motd").write_text("one\ntwo\nthree\n")
    [spec] = registry.select(["demo"])
    found, skipped = run_check(spec, Facts(RootHost(str(clean_tree)), config))
    assert ([f.target["path"] for f in found], skipped) == (["/etc/motd"], [])
    (clean_tree / "etc/motd").write_text("one\n")
    found, _ = run_check(spec, Facts(RootHost(str(clean_tree)), config))
    assert found == []


@pytest.mark.parametrize("source, message", [
    (FAMILY_SOURCE.replace('id="demo.long_motd"', 'id="ssh.long_motd"'), "must start with its family 'demo.'"),
    (FAMILY_SOURCE.replace('aliases=("demo.motd",)', 'aliases=("ssh.default_port",)'), "declared twice"),
    (FAMILY_SOURCE.replace('config_input("demo")', 'config_input("dmo")'), r"reads config section \[dmo\]"),
    (FAMILY_SOURCE.replace('needs=(MOTD,)', 'needs=("motd",)'), "needs must be Fact handles"),
    (FAMILY_SOURCE.replace('"""A long motd', '"""""" and """A long motd'), "no docstring"),
    (FAMILY_SOURCE.replace('FAMILY = Family("demo", __doc__, DemoConfig)', ''), "declares no FAMILY"),
    (FAMILY_SOURCE.replace('aliases=("demo.motd",)', 'tags=("brute-force",)'), "MITRE ATT&CK technique ids"),
    (FAMILY_SOURCE.replace('inputs=(config_input("demo"),)', 'inputs=("demo",)'), "is not a Fact, an optional fact"),
    (FAMILY_SOURCE.replace("def collect_motd(host, cfg):", "def collect_motd(host):"), "takes 1 arguments"),
    (FAMILY_SOURCE.replace('aliases=("demo.motd",)', 'aliases=("motd",)'), "'motd' is not a check id"),
    (FAMILY_SOURCE.replace('Fact("motd"', 'Fact("accounts"'), "two facts are named 'accounts'"),
    (FAMILY_SOURCE.replace('"demo', '"scan'), "the name is the engine's own config section"),
])
def test_declaration_mistakes_fail_when_the_registry_loads(tmp_path: Path, source: str, message: str) -> None:
    demo = _module(tmp_path, "hg_bad_family", source)
    with pytest.raises(RegistryError, match=message):
        Registry.from_modules([*family_modules(), demo])


def test_a_family_module_that_cannot_be_imported_is_a_registry_error(tmp_path: Path, monkeypatch) -> None:
    package = tmp_path / "hg_fams"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "good.py").write_text(FAMILY_SOURCE.replace('"demo', '"good').replace("DemoConfig", "GoodConfig"))
    (package / "bad.py").write_text("def broken(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RegistryError, match=r"cannot load family module hg_fams.bad: SyntaxError"):
        family_modules("hg_fams")
    (package / "bad.py").unlink()
    assert [m.__name__ for m in family_modules("hg_fams")] == ["hg_fams.good"]


def test_a_builtin_family_is_named_after_its_module(monkeypatch) -> None:
    module = ModuleType("hostguard.checks.banner")
    module.FAMILY = Family("motd", "named after another module")
    with pytest.raises(RegistryError, match="a family is named after its module \\('banner'\\)"):
        Registry.from_modules([module])


def test_fact_cycle_is_an_error() -> None:
    a: Fact[int] = Fact("a", lambda host, b: 1)
    b: Fact[int] = Fact("b", lambda host, a: 1, inputs=(a,))
    a.inputs = (b,)

    def func(ctx):  # pragma: no cover - never runs
        """A check that reads a fact cycle, which the registry must refuse."""
        return []

    spec = check(id="cyc.x", severity="low", summary="x", needs=(a,))(func).__check__
    module = ModuleType("hg_cycle")
    module.FAMILY = Family("cyc", "cycle")
    module.func = func
    func.__module__ = "hg_cycle"
    assert spec.needs == (a,)
    with pytest.raises(RegistryError, match="fact cycle: a -> b -> a"):
        Registry.from_modules([module])
    assert config_input("x").section == "x"
