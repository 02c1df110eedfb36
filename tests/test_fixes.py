"""A fix we print is a fix that works: every file step of every hit fixture's findings is applied to a copy of
the tree with respond/apply.py, and the tree is scanned again: the finding is gone and nothing new at medium
or above appears. Steps that must be checked by the tool reading them (sshd -t, nft -c, visudo -c, chpasswd)
are validated in each family's fix tests; here every remediation must be data (steps, or manual with why)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostguard.engine.registry import default_registry
from hostguard.findings import Finding, Severity
from hostguard.host.base import RootHost
from hostguard.remediation import Command, Edit, Write
from hostguard.respond.apply import apply
from tests.conftest import FAST, HITS, build_tree, make_config, run_one

FIXTURE_IDS = sorted(p.name for p in HITS.iterdir() if p.is_dir())


PASSWORD_FILES = ("/etc/shadow", "/etc/passwd")


def _scan(tree: Path, passwords: bool) -> dict[str, Finding]:
    """Every finding of every check on the tree, by fingerprint, the facts read once as a scan reads them.
    The weak-password checks (seconds per tree) only when the fix touches the password files: no other
    fix can change what they find."""
    from hostguard.checks.accounts import KNOWN_ACCOUNTS, KNOWN_KEYS
    from hostguard.engine.facts import Facts
    from hostguard.engine.runner import run_check

    facts = Facts(RootHost(str(tree)), make_config(**FAST), given={KNOWN_ACCOUNTS: None, KNOWN_KEYS: None})
    out: dict[str, Finding] = {}
    for spec in default_registry().checks:
        if spec.family == "weak_passwords" and not passwords:
            continue
        found, _ = run_check(spec, facts)
        out.update({f.fingerprint: f for f in found})
    return out


def _has_file_steps(finding: Finding) -> bool:
    return any(isinstance(s, Edit | Write) or s.kind == "delete_line" for s in finding.remediation.steps)


@pytest.mark.parametrize("check_id", FIXTURE_IDS)
def test_applied_fix_removes_the_finding_and_adds_nothing(tmp_path: Path, check_id: str) -> None:
    tree = build_tree(tmp_path / "host", HITS / check_id)
    found, _ = run_one(check_id, RootHost(str(tree)))
    fixable = [f for f in found if _has_file_steps(f)]
    if not fixable:
        return  # manual or command-only fixes: validated by the family's own fix tests
    passwords = check_id.startswith("weak_passwords.") or any(
        getattr(step, "path", "") in PASSWORD_FILES for f in fixable for step in f.remediation.steps)
    before = _scan(tree, passwords)
    for finding in fixable:
        apply(finding.remediation.steps, str(tree))
    after = _scan(tree, passwords)
    assert [f.title for f in fixable if f.fingerprint in after] == []
    new = [f"{f.id}: {f.title}" for fp, f in after.items()
           if fp not in before and f.severity.rank >= Severity.MEDIUM.rank]
    assert new == []


@pytest.mark.parametrize("check_id", FIXTURE_IDS)
def test_steps_hold_no_placeholders_and_commands_are_argv(tmp_path: Path, check_id: str) -> None:
    tree = build_tree(tmp_path / "host", HITS / check_id)
    found, _ = run_one(check_id, RootHost(str(tree)))
    for finding in found:
        rem = finding.remediation
        assert rem.steps or rem.manual, f"{finding.id}: a fix is steps, or manual with the reason"
        assert rem.summary, f"{finding.id}: a fix needs a summary"
        assert rem.placeholders() == [], f"{finding.id}: a value only the owner knows belongs in params"
        for step in rem.steps:
            if isinstance(step, Command):
                assert step.argv and all(isinstance(a, str) and a for a in step.argv)
                assert not any(a in ("&&", "||", ";", "|") for a in step.argv), "one command per step, no shell"


def test_every_finding_on_this_live_host_is_fixable_data(tmp_path: Path) -> None:
    """The live-only checks (ports, firewall) too: whatever this machine shows, each fix is data."""
    from hostguard.engine.runner import run_scan
    from hostguard.host.base import LiveHost
    from hostguard.store.state import StateStore
    from tests.conftest import make_config

    state = StateStore(str(tmp_path / "state"))
    try:
        outcome = run_scan(LiveHost(), make_config(), state,
                           only=[f for f in default_registry().families if f != "weak_passwords"])
    finally:
        state.close()
    for finding in outcome.report.findings:
        rem = finding.remediation
        assert (rem.steps or rem.manual) and rem.summary and rem.placeholders() == [], finding.id
