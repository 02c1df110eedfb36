"""`hostguard fix` on fixture trees (--root): the diff first, backups with a manifest, the service's own tool
validating, the re-scan, automatic rollback, undo that refuses a changed file, the timed rollback and its
confirmation from a new session, and the audit log. Every fix here acts on a copy of a fixture tree in a
temporary directory; the timed rollback is a detached process acting on that tree only."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hostguard.cli import main
from hostguard.findings import Finding
from hostguard.host.base import RootHost
from hostguard.store.state import StateStore
from tests.conftest import FIXTURES, HITS, HOSTS, build_tree, make_config, need_root, need_tool

FAST = str(FIXTURES / "fast.toml")


def snapshot(tree: Path) -> dict[str, tuple[bytes, int, int, int]]:
    """Every file of the tree: content, mode, owner (what a restore must bring back exactly)."""
    out = {}
    for path in sorted(tree.rglob("*")):
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            out[str(path.relative_to(tree))] = (path.read_bytes(), st.st_mode, st.st_uid, st.st_gid)
    return out


def hg(state: Path, *args: str) -> int:
    return main(["--config", FAST, "--state", str(state), *args])


def scan(tree: Path, state: Path, only: str) -> dict[str, Finding]:
    from hostguard.engine.runner import run_scan

    store = StateStore(str(state))
    try:
        report = run_scan(RootHost(str(tree)), make_config(weak_passwords={"budget_seconds": 0, "floor": 20}),
                          store, only=only.split(","), root_label=str(tree)).report
    finally:
        store.close()
    return {f.fingerprint: f for f in report.findings}


def audit(state: Path) -> list[tuple[str, str, str]]:
    store = StateStore(str(state))
    try:
        return [(e.action, e.subject, e.reason) for e in store.audit_log()]
    finally:
        store.close()


def manifests(state: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted((state / "fixes").glob("*/manifest.json"))]


def fix_ids(out: str) -> list[str]:
    return [line.split()[-1] for line in out.splitlines() if line.strip().startswith("undo with:")]


def test_dry_run_shows_the_diff_and_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = build_tree(tmp_path / "host", HITS / "ssh.root_password_login")
    before = snapshot(tree)
    assert hg(tmp_path / "state", "fix", "--all", "--root", str(tree), "--only", "ssh", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "-    PermitRootLogin yes\n  +    PermitRootLogin prohibit-password" in out
    assert "-    PasswordAuthentication yes\n  +    PasswordAuthentication no" in out
    assert "`systemctl reload sshd` needs the running system: not run under --root" in out
    assert snapshot(tree) == before
    assert not (tmp_path / "state" / "fixes").exists() or manifests(tmp_path / "state") == []
    assert audit(tmp_path / "state") == []


CASES = [  # (overlay, families to scan, the fixed check, the file it changes)
    (HITS / "ssh.root_password_login", "ssh", "ssh.root_password_login", "etc/ssh/sshd_config"),
    (HITS / "ssh.empty_passwords", "ssh", "ssh.empty_passwords", "etc/ssh/sshd_config.d/05-legacy.conf"),
    (HOSTS / "fixes/accounts/sudo_with_password", "accounts", "accounts.sudo_nopasswd", "etc/sudoers.d/deploy"),
    (HITS / "accounts.shadow_only", "accounts", "accounts.shadow_only", "etc/shadow"),
    (HITS / "accounts.empty_password", "accounts", "accounts.empty_password", "etc/shadow"),
    (HITS / "password_policy.hash_method", "password_policy", "password_policy.hash_method", "etc/pam.d/common-password"),
    (HITS / "password_policy.min_length", "password_policy", "password_policy.min_length", "etc/security/pwquality.conf"),
]


@pytest.mark.parametrize(("overlay", "only", "check", "changed"), CASES, ids=[c[2] for c in CASES])
def test_fix_backs_up_applies_rescans_and_undo_restores_byte_for_byte(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], overlay: Path, only: str, check: str, changed: str) -> None:
    need_tool("sshd", "visudo", "usermod", "unshare")
    need_root("sshd -t in a private mount namespace, usermod -R")
    tree = build_tree(tmp_path / "host", overlay)
    state = tmp_path / "state"
    [target] = [f for f in scan(tree, state, only).values() if f.id == check]
    original = snapshot(tree)
    assert hg(state, "fix", target.fingerprint[:10], "--root", str(tree), "--only", only, "--yes") == 0
    out = capsys.readouterr().out
    [fix_id] = fix_ids(out)
    assert target.fingerprint not in scan(tree, state, only)
    assert (tree / changed).read_bytes() != original[changed][0]
    [manifest] = manifests(state)
    assert manifest["id"] == fix_id and manifest["status"] == "applied" and manifest["fingerprint"] == target.fingerprint
    [entry] = [f for f in manifest["files"] if f["path"] == "/" + changed]  # type: ignore[attr-defined]
    backup = (state / "fixes" / fix_id / entry["backup"]).read_bytes()
    assert backup == original[changed][0]
    assert entry["sha_before"] == hashlib.sha256(backup).hexdigest()
    assert entry["sha_after"] == hashlib.sha256((tree / changed).read_bytes()).hexdigest()
    assert (entry["mode"], entry["uid"], entry["gid"]) == (original[changed][1] & 0o7777, *original[changed][2:])
    if only == "ssh":
        assert "sshd -t (the tree's /etc/ssh) accepts the config" in out
    if check == "accounts.sudo_nopasswd":
        assert "/etc/sudoers.d/deploy: visudo accepts it" in out

    assert hg(state, "fix", "--undo", fix_id) == 0
    assert snapshot(tree) == original
    assert target.fingerprint in scan(tree, state, only)
    assert [(a, s) for a, s, _ in audit(state)] == [("fix", fix_id), ("undo", fix_id)]
    assert manifests(state)[0]["status"] == "undone"
    assert hg(state, "fix", "--undo", fix_id) == 2  # once only
    assert "is undone: nothing to undo" in capsys.readouterr().err


def test_undo_refuses_when_a_file_changed_since(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = build_tree(tmp_path / "host", HITS / "password_policy.ageing")
    state = tmp_path / "state"
    assert hg(state, "fix", "--all", "--root", str(tree), "--only", "password_policy", "--yes") == 0
    [fix_id] = fix_ids(capsys.readouterr().out)
    login_defs = tree / "etc/login.defs"
    login_defs.write_text(login_defs.read_text() + "UMASK 027\n")  # the owner's own change after the fix
    after_owner = snapshot(tree)
    assert hg(state, "fix", "--undo", fix_id) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"hostguard: error: fix {fix_id}: refused: /etc/login.defs changed since the fix (sha256 differs); "
                   "nothing was restored"]
    assert snapshot(tree) == after_owner
    assert audit(state)[-1][:2] == ("undo", fix_id) and audit(state)[-1][2].startswith("refused")
    assert manifests(state)[0]["status"] == "applied"


def test_a_fix_sshd_rejects_is_rolled_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A drop-in the fix does not touch is broken: after the edit `sshd -t` fails, so the edit is undone."""
    need_tool("sshd", "ssh-keygen", "unshare")
    need_root("sshd -t in a private mount namespace")
    tree = build_tree(tmp_path / "host", HITS / "ssh.max_auth_tries")
    (tree / "etc/ssh/sshd_config.d/99-broken.conf").write_text("NoSuchOption yes\n")
    before = snapshot(tree)
    state = tmp_path / "state"
    assert hg(state, "fix", "--all", "--root", str(tree), "--only", "ssh.max_auth_tries", "--yes") == 1
    out = capsys.readouterr().out
    assert "rolled back: ssh.max_auth_tries" in out and "Bad configuration option: NoSuchOption" in out
    assert snapshot(tree) == before
    [manifest] = manifests(state)
    assert manifest["status"] == "rolled back"
    assert [a for a, _, _ in audit(state)] == ["rollback"]
    assert "validation failed" in audit(state)[0][2]


def test_near_miss_valid_drop_in_is_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same fix with a valid extra drop-in passes sshd -t and stays."""
    need_tool("sshd", "ssh-keygen", "unshare")
    need_root("sshd -t in a private mount namespace")
    tree = build_tree(tmp_path / "host", HITS / "ssh.max_auth_tries")
    (tree / "etc/ssh/sshd_config.d/99-fine.conf").write_text("LoginGraceTime 30\n")
    state = tmp_path / "state"
    assert hg(state, "fix", "--all", "--root", str(tree), "--only", "ssh.max_auth_tries", "--yes") == 0
    assert "MaxAuthTries 4" in (tree / "etc/ssh/sshd_config").read_text()
    assert [a for a, _, _ in audit(state)] == ["fix"]


def test_two_findings_in_one_file_are_replanned_in_turn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Deleting ghost's shadow line moves ghost2's line up: the second fix is planned again after the first
    (its scan-time step names a line that no longer holds it, which apply would refuse)."""
    tree = build_tree(tmp_path / "host", HITS / "accounts.shadow_only")
    shadow = tree / "etc/shadow"
    ghost2 = "ghost2:$6$abcdefgh$9876543210:20000:0:99999:7:::"
    shadow.write_text(shadow.read_text() + ghost2 + "\n")
    state = tmp_path / "state"
    first = {f.title: f for f in scan(tree, state, "accounts").values() if f.id == "accounts.shadow_only"}
    assert sorted(first) == ["'ghost' has a password hash in /etc/shadow but no /etc/passwd entry",
                             "'ghost2' has a password hash in /etc/shadow but no /etc/passwd entry"]
    lines = shadow.read_text().splitlines()
    assert lines.index(ghost2) == lines.index(next(x for x in lines if x.startswith("ghost:"))) + 1
    assert hg(state, "fix", "--all", "--root", str(tree), "--only", "accounts", "--yes") == 0
    out = capsys.readouterr().out
    assert len(fix_ids(out)) == 2
    left = shadow.read_text()
    assert "ghost:" not in left and "ghost2:" not in left and left.count("\n") == len(lines) - 2
    assert [a for a, _, _ in audit(state)] == ["fix", "fix"]
    # the first fix cannot be undone past the second (the file changed since it); the second, then the first can
    ids = fix_ids(out)
    assert hg(state, "fix", "--undo", ids[0]) == 2
    assert hg(state, "fix", "--undo", ids[1]) == 0 and hg(state, "fix", "--undo", ids[0]) == 0
    assert shadow.read_text().splitlines() == lines


def test_findings_without_steps_are_listed_by_hand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = build_tree(tmp_path / "host", HITS / "ssh.default_port")
    before = snapshot(tree)
    assert hg(tmp_path / "state", "fix", "--all", "--root", str(tree), "--only", "ssh.default_port", "--yes") == 0
    out = capsys.readouterr().out
    assert out.startswith("by hand: [low] ssh.default_port") and "nothing to fix with steps" in out
    assert snapshot(tree) == before


@pytest.mark.parametrize(("args", "message"), [
    (["fix"], "fix needs exactly one of"),
    (["fix", "--all", "--undo", "20250101-000000-000000"], "fix needs exactly one of"),
    (["fix", "zz"], "'zz' is not a fingerprint"),
    (["fix", "0123456789abcdef"], "no finding with fingerprint 0123456789abcdef"),
    (["fix", "--undo", "../etc"], "'../etc' is not a fix id"),
    (["fix", "--undo", "20250101-000000-000000"], "no fix 20250101-000000-000000"),
    (["fix", "--all", "--rollback-after", "0"], "--rollback-after must be between"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                          message: str) -> None:
    tree = build_tree(tmp_path / "host")
    full = [*args, "--root", str(tree), "--only", "ssh", "--yes"] if "--undo" not in args and len(args) > 1 else args
    assert hg(tmp_path / "state", *full) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_no_terminal_and_no_yes_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))  # not a terminal: an answer there is not the owner's
    tree = build_tree(tmp_path / "host", HITS / "ssh.max_auth_tries")
    before = snapshot(tree)
    assert hg(tmp_path / "state", "fix", "--all", "--root", str(tree), "--only", "ssh") == 2
    assert "pass --yes" in capsys.readouterr().err
    assert snapshot(tree) == before


def _wait(predicate: object, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_timed_rollback_undoes_an_unconfirmed_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = build_tree(tmp_path / "host", HITS / "password_policy.ageing")
    before = snapshot(tree)
    state = tmp_path / "state"
    assert hg(state, "fix", "--all", "--root", str(tree), "--only", "password_policy", "--yes",
              "--rollback-after", "1") == 0
    out = capsys.readouterr().out
    [fix_id] = fix_ids(out)
    assert f"unless you confirm from a NEW session: hostguard fix --confirm {fix_id}" in out
    assert snapshot(tree) != before
    assert _wait(lambda: manifests(state)[0]["status"] == "rolled back"), manifests(state)
    assert snapshot(tree) == before
    assert [(a, r) for a, _, r in audit(state)] == [("fix", "fixed"), ("rollback", "timed rollback: not confirmed")]


def test_confirm_from_a_new_session_keeps_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = build_tree(tmp_path / "host", HITS / "password_policy.ageing")
    state = tmp_path / "state"
    assert hg(state, "fix", "--all", "--root", str(tree), "--only", "password_policy", "--yes",
              "--rollback-after", "60") == 0
    [fix_id] = fix_ids(capsys.readouterr().out)
    fixed = snapshot(tree)
    pid = manifests(state)[0]["timer"]["pid"]  # type: ignore[index]
    assert Path(f"/proc/{pid}").exists()
    assert hg(state, "fix", "--confirm", fix_id) == 2  # the session that made the fix proves nothing
    assert "from a new session" in capsys.readouterr().err
    assert hg(state, "fix", "--list") == 0
    assert f"{fix_id}  applied, rollback armed" in capsys.readouterr().out
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "hostguard.cli", "--state", str(state), "fix", "--confirm", fix_id],
                          capture_output=True, text=True, start_new_session=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"confirmed: fix {fix_id} stays (rollback process {pid} stopped)" in done.stdout
    assert _wait(lambda: not Path(f"/proc/{pid}").exists() or b"zombie" in Path(f"/proc/{pid}/status").read_bytes())
    assert snapshot(tree) == fixed
    assert manifests(state)[0]["status"] == "confirmed"
    assert [a for a, _, _ in audit(state)] == ["fix", "confirm"]


def test_the_scans_a_fix_makes_are_not_in_the_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """fix scans to plan and re-scans to verify: checks of one change, not looks at the host. history and the
    next --diff see only the owner's own scans (near miss: the owner's scan afterwards is listed)."""
    tree = build_tree(tmp_path / "host", HITS / "ssh.max_auth_tries")
    state = tmp_path / "state"
    assert hg(state, "fix", "--all", "--root", str(tree), "--only", "ssh", "--yes") == 0
    capsys.readouterr()
    assert hg(state, "history", "--root", str(tree), "--format", "json") == 0
    assert json.loads(capsys.readouterr().out)["scans"] == []
    assert hg(state, "scan", "--root", str(tree), "--only", "ssh", "--format", "json") == 0
    capsys.readouterr()
    assert hg(state, "history", "--root", str(tree), "--format", "json") == 0
    assert len(json.loads(capsys.readouterr().out)["scans"]) == 1


def test_a_unit_fix_runs_on_a_tree_and_undo_brings_the_removed_unit_back(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A planted, enabled unit in a mounted tree: `fix --root` runs `systemctl --root=TREE disable` (its
    enablement link goes) and removes the unit file inside the tree (backed up first); live-only steps are
    said and skipped. The re-scan is clean, and `--undo` puts the unit file back byte for byte (the link is
    the owner's to re-create with `systemctl enable`, which the fix says nothing against). Nothing outside
    the tree is touched: the tree's path is in every command that ran."""
    need_tool("systemctl")
    tree = build_tree(tmp_path / "host", HITS / "persistence.systemd_unit")
    unit = tree / "etc/systemd/system/dbus-helper.service"
    link = tree / "etc/systemd/system/multi-user.target.wants/dbus-helper.service"
    subprocess.run(["systemctl", f"--root={tree}", "enable", "dbus-helper.service"], check=True, capture_output=True)
    assert link.is_symlink()
    original = unit.read_bytes()
    state = tmp_path / "state"
    [target] = [f for f in scan(tree, state, "persistence").values()
                if f.id == "persistence.systemd_unit" and f.target["path"] == "/etc/systemd/system/dbus-helper.service"]
    assert hg(state, "fix", target.fingerprint[:10], "--root", str(tree), "--only", "persistence", "--yes") == 0
    out = capsys.readouterr().out
    assert f"run: systemctl --root={tree} disable dbus-helper.service" in out
    assert f"run: rm -f -- {tree}/etc/systemd/system/dbus-helper.service" in out
    assert "`systemctl stop dbus-helper.service` needs the running system: not run under --root" in out
    assert not unit.exists() and not link.is_symlink()
    assert target.fingerprint not in scan(tree, state, "persistence")
    [fix_id] = fix_ids(out)
    [entry] = [f for f in manifests(state)[0]["files"]  # type: ignore[attr-defined]
               if f["path"] == "/etc/systemd/system/dbus-helper.service"]
    assert entry["sha_after"] is None and (state / "fixes" / fix_id / entry["backup"]).read_bytes() == original
    assert hg(state, "fix", "--undo", fix_id) == 0
    assert unit.read_bytes() == original
    assert target.fingerprint in scan(tree, state, "persistence")


def test_a_removal_that_would_leave_the_tree_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Near miss of the tree form: when the unit's directory in the tree is a link out of the tree, the rm has
    no place inside the tree, and the fix is refused rather than run on this machine's own path."""
    from hostguard.respond.fix import in_tree, on_tree

    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (tree / "etc/systemd").symlink_to(outside)
    assert in_tree(str(tree), "/etc/systemd/x.service") is None
    assert on_tree(["rm", "-f", "--", "/etc/systemd/x.service"], str(tree)) is None
    assert on_tree(["rm", "-f", "--", "/etc/x.conf"], str(tree)) == ["rm", "-f", "--", f"{tree}/etc/x.conf"]
    assert on_tree(["systemctl", "--machine=alice@", "--user", "disable", "a.service"], str(tree)) is None
    assert on_tree(["systemctl", "--global", "disable", "a.service"], str(tree)) == [
        "systemctl", f"--root={tree}", "--global", "disable", "a.service"]
