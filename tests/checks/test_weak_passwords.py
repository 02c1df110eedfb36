"""weak_passwords.system beyond the fixture: budget, unchecked schemes, what is (not) shown."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest

from hostguard.engine.runner import run_scan
from hostguard.findings import Report, Skipped
from hostguard.host.base import RootHost
from hostguard.passwords import verifiers
from hostguard.passwords.guesses import common_passwords
from hostguard.store.state import StateStore
from tests.conftest import HITS, build_tree, make_config, need_tool, run_one


def _shadow_tree(tmp_path: Path, lines: list[str]) -> Path:
    tree = build_tree(tmp_path / "host")
    shadow = [x for x in (tree / "etc/shadow").read_text().splitlines() if not x.startswith(("root:", "alice:"))]
    (tree / "etc/shadow").write_text("\n".join(shadow + lines) + "\n")
    return tree


def _run(tree: Path, **overrides):
    config = make_config(weak_passwords={"budget_seconds": 0, "floor": 20, **overrides})
    return run_one("weak_passwords.system", RootHost(str(tree)), config)


def _sha512(password: str) -> str:
    return verifiers.crypt_verifier().crypt(password.encode(), "$6$hostguardtest$")


def test_rank_beyond_floor_needs_budget(tmp_path: Path) -> None:
    word = common_passwords()[400]
    tree = _shadow_tree(tmp_path, [f"alice:{_sha512(word)}:20000:0:99999:7:::"])
    found, skipped = _run(tree)
    assert found == []
    [skip] = [s for s in skipped if "alice" in s.detail]
    assert skip.reason == "budget" and "tried" in skip.detail
    found, skipped = _run(tree, budget_seconds=60)
    assert [(f.target["user"], f.evidence["matched"]) for f in found] == [("alice", "common password (rank 401)")]
    assert [s for s in skipped if "alice" in s.detail] == []


def test_password_is_never_shown(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "host", HITS / "weak_passwords.system")
    found, _ = _run(tree)
    alice = next(f for f in found if f.target["user"] == "alice")
    assert alice.evidence["matched"] == "derived from the account name"
    assert alice.severity == "critical"  # alice is in the sudo group
    text = json.dumps([f.to_dict() for f in found])
    for secret in ("Alice123", "letmein", "qwerty", "clean2026"):
        assert secret not in text.replace("clean2026.test", "")


def test_unknown_scheme_is_unchecked_not_strong(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "host", HITS / "weak_passwords.system")
    found, skipped = _run(tree)
    assert "grace" not in {f.target["user"] for f in found}
    assert [(s.reason, "grace" in s.detail) for s in skipped if "grace" in s.detail] == [("unsupported", True)]


class _NoYescrypt(verifiers.CryptVerifier):
    """A crypt library whose yescrypt fails its known answer (as an old libcrypt would)."""

    def working_schemes(self) -> dict[str, str]:
        status = dict(super().working_schemes())
        status["yescrypt"] = "the system's crypt library cannot compute it"
        return status


def test_failed_self_test_leaves_account_unchecked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hostguard.checks.weak_passwords.crypt_verifier", _NoYescrypt)
    tree = build_tree(tmp_path / "host", HITS / "weak_passwords.system")
    found, skipped = _run(tree)
    users = {f.target["user"] for f in found}
    assert "alice" not in users and "ftpuser" in users  # yescrypt unchecked, sha512 still checked
    assert any("alice" in s.detail and s.reason == "unsupported" for s in skipped)


def test_locked_accounts_are_not_tried(tmp_path: Path) -> None:
    tree = _shadow_tree(tmp_path, [f"alice:!{_sha512('123456')}:20000:0:99999:7:::"])
    found, skipped = _run(tree)
    assert found == [] and skipped == []


def _hash(password: str, setting: str) -> str:
    hashed = verifiers.crypt_verifier().crypt(password.encode(), setting)
    assert hashed is not None
    return hashed


def _tried(skipped: list[Skipped], account: str, scheme: str) -> int:
    [skip] = [s for s in skipped if f"account '{account}'" in s.detail]
    assert skip.reason == "budget" and skip.detail.startswith(f"account '{account}' ({scheme}): tried ")
    return int(skip.detail.split("tried ")[1].split()[0])


def test_budget_is_shared_by_time_not_by_count(tmp_path: Path) -> None:
    """An MD5-crypt hash (~0.13 ms a guess here) and a bcrypt cost-6 one (~4.6 ms), neither guessable, in one
    1.5 s budget: the cheap one gets many times the guesses (about 25 times with both cores free, still
    over 10 on a loaded machine, whose slowness hits both alike). Round-robin gave them about the same.
    Exact shares, found-early and the floor are counted with a controlled clock in tests/passwords."""
    secret = "x7-never-in-any-list-Q"
    tree = _shadow_tree(tmp_path, [f"alice:{_hash(secret, '$2b$06$hostguardtestsaltsalt00')}:20000:0:99999:7:::",
                                   f"bob:{_hash(secret, '$1$hgtest$')}:20000:0:99999:7:::"])
    found, skipped = _run(tree, budget_seconds=1.5)
    assert found == []
    assert _tried(skipped, "bob", "md5") >= 5 * _tried(skipped, "alice", "bcrypt")


# --- progress remembered between scans (cache/passwords.db) -----------------------------------------------

class _Recording(verifiers.CryptVerifier):
    """The real crypt library, recording every (hash, candidate) tried: counts guesses without a clock."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def verify(self, candidate: bytes, hashed: str) -> bool:
        self.calls.append((hashed, candidate.decode()))
        return super().verify(candidate, hashed)


class _Scans:
    """Full scans (``--only weak_passwords``) of one tree with one state directory, the guaranteed guesses only
    (budget 0, one worker: the order of guesses is the list's), recording what each scan tried."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: list[str]) -> None:
        self.tree = _shadow_tree(tmp_path, lines)
        self.state = StateStore(str(tmp_path / "state"))
        self.verifier = _Recording()
        monkeypatch.setattr("hostguard.checks.weak_passwords.crypt_verifier", lambda: self.verifier)

    def set_shadow(self, lines: list[str]) -> None:
        shadow = [x for x in (self.tree / "etc/shadow").read_text().splitlines() if not x.startswith(("alice:", "bob:"))]
        (self.tree / "etc/shadow").write_text("\n".join(shadow + lines) + "\n")

    def scan(self, **overrides: object) -> tuple[Report, list[str]]:
        self.verifier.calls.clear()
        config = make_config(weak_passwords={"budget_seconds": 0, "floor": 20, "workers": 1, **overrides})
        report = run_scan(RootHost(str(self.tree)), config, self.state, only=["weak_passwords"]).report
        return report, [c for h, c in self.verifier.calls if h.startswith("$6$")]

    def cache_bytes(self) -> bytes:
        return b"".join(p.read_bytes() for p in (self.state.cache_dir).iterdir() if p.name.startswith("passwords.db"))


SECRET = "x7-never-in-any-list-Q"


def _detail(report: Report, account: str) -> str:
    [skip] = [s for s in report.skipped if f"account '{account}'" in s.detail]
    assert skip.reason == "budget"
    return skip.detail


def test_second_scan_resumes_where_the_first_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scans = _Scans(tmp_path, monkeypatch, [f"alice:{_sha512(SECRET)}:20000:0:99999:7:::"])
    report1, first = scans.scan()
    report2, second = scans.scan()
    n = len(first)
    assert n > 20 and len(second) == n  # the guaranteed count is a minimum per scan: the next n untried guesses
    assert set(first).isdisjoint(second)
    assert first[:20] != second[:20] and second[0] not in first
    size = _detail(report1, "alice").split(" of ")[1].split()[0]
    assert _detail(report1, "alice").startswith(f"account 'alice' (sha512): tried {n} of {size} guesses, none matched")
    assert _detail(report2, "alice").startswith(f"account 'alice' (sha512): tried {2 * n} of {size} guesses, {n} of "
                                                "them in earlier scans, none matched")
    _, third = scans.scan()
    assert set(third).isdisjoint(first + second) and len(third) == n


def test_changed_hash_or_list_starts_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scans = _Scans(tmp_path, monkeypatch, [f"alice:{_sha512(SECRET)}:20000:0:99999:7:::"])
    _, first = scans.scan()
    scans.scan()
    # a new password (same scheme): the first guesses again
    scans.set_shadow([f"alice:{_hash(SECRET + '!', '$6$othersalt$')}:20000:0:99999:7:::"])
    report, again = scans.scan()
    assert again == first and "earlier scans" not in _detail(report, "alice")
    # the same password under another scheme (SHA-256): a changed hash string, so over again too
    scans.set_shadow([f"alice:{_hash(SECRET, '$5$hgtest$')}:20000:0:99999:7:::"])
    _, sha256 = scans.scan()
    assert not sha256  # _Scans only records $6$ hashes: look at the scheme's own calls
    assert [c for h, c in scans.verifier.calls][: len(first)] == first
    # a changed list (a site word added): starts over on the new list, whose first guesses are the site word's
    scans.set_shadow([f"alice:{_sha512(SECRET)}:20000:0:99999:7:::"])
    scans.scan()
    report, changed = scans.scan(extra_words=["examplecorp"])
    assert "earlier scans" not in _detail(report, "alice")
    assert "examplecorp" in changed and set(first) - {"examplecorp"} <= set(changed)


def test_found_password_is_found_again_and_never_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hit: a password just past the first scan's guesses is found by the resumed second scan, with the
    total count; the third scan resumes from the same place and finds it again (the finding does not
    vanish). Near miss: the first scan, which stops before it, finds nothing. The cache holds neither the
    hash nor the password nor any guess tried."""
    probe = _Scans(tmp_path / "probe", monkeypatch, [f"alice:{_sha512(SECRET)}:20000:0:99999:7:::"])
    _, first = probe.scan()
    _, second = probe.scan()
    password = second[5]
    hashed = _sha512(password)
    scans = _Scans(tmp_path / "real", monkeypatch, [f"alice:{hashed}:20000:0:99999:7:::"])
    report1, tried1 = scans.scan()
    assert tried1 == first and [f for f in report1.findings if f.id == "weak_passwords.system"] == []
    for _ in range(2):
        report, tried = scans.scan()
        [found] = [f for f in report.findings if f.id == "weak_passwords.system"]
        assert found.target == {"kind": "user", "user": "alice"}
        assert tried == second[:6]  # resumed after the first scan's guesses, stopped at the password
        assert (found.evidence["tried"], found.evidence["tried_in_earlier_scans"]) == (len(first) + 6, len(first))
        assert password not in json.dumps(found.to_dict())
    data = scans.cache_bytes()
    assert data and hashed.encode() not in data and hashed.rsplit("$", 1)[1].encode() not in data
    for secret in {password, *[g for g in first if len(g) >= 6 and not set(g) <= set("0123456789abcdef-:")]}:
        assert secret.encode() not in data, secret


def test_cache_file_mode_and_corrupt_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scans = _Scans(tmp_path, monkeypatch, [f"alice:{_sha512(SECRET)}:20000:0:99999:7:::"])
    _, first = scans.scan()
    db = scans.state.cache_dir / "passwords.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    db.write_bytes(b"\0garbage, not SQLite\n" * 100)
    report, again = scans.scan()
    assert again == first  # progress lost: starts over, and says so
    assert "was unreadable" in _detail(report, "alice") and "rebuilt" in _detail(report, "alice")
    report, resumed = scans.scan()
    assert set(resumed).isdisjoint(first) and "rebuilt" not in _detail(report, "alice")


def test_no_state_store_no_resume(tmp_path: Path) -> None:
    """Near miss of resuming: run without a state store (as `run_one` does), every run starts at the top."""
    tree = _shadow_tree(tmp_path, [f"alice:{_sha512(SECRET)}:20000:0:99999:7:::"])
    details = [_tried_detail(_run(tree)[1]) for _ in range(2)]
    assert details[0] == details[1] and "earlier scans" not in details[0]


def _tried_detail(skipped: list[Skipped]) -> str:
    [skip] = [s for s in skipped if "account 'alice'" in s.detail]
    return skip.detail


@pytest.mark.parametrize("flag", ["-m", "-B", "-s"])
def test_htpasswd_entries_written_by_htpasswd_itself(tmp_path: Path, flag: str) -> None:
    """The real `htpasswd` writes one weak entry (a common password) and one strong one in its apr1, bcrypt
    or {SHA} form; only the weak one is reported, by user and file."""
    need_tool("htpasswd")
    tree = build_tree(tmp_path / "host", HITS / "weak_passwords.web_password_file")
    lines = [subprocess.run(["htpasswd", "-nb", flag, user, password], capture_output=True, text=True,
                            check=True).stdout.strip()
             for user, password in (("editor", "123456"), ("owner", "tall-window-87-quiet-river"))]
    (tree / "etc/nginx/.htpasswd").write_text("\n".join(lines) + "\n")
    found, skipped = run_one("weak_passwords.web_password_file", RootHost(str(tree)))
    assert [(f.target["user"], f.target["path"]) for f in found] == [("editor", "/etc/nginx/.htpasswd")]
    assert [s.reason for s in skipped] in ([], ["budget"])
