"""The journal through the real journalctl: journal files built by systemd-journal-remote from export format
(CI has no journald), read with ``--journal-file`` and, as a tree's journal, with ``--root DIR --journal``."""

from __future__ import annotations

import json
import os
import struct
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hostguard.cli import main
from hostguard.detect.probes import OwnProbes
from hostguard.logons.sources import journal_argv
from hostguard.logons.store import LogonStore
from hostguard.logons.timestamps import Clock
from hostguard.store.state import StateStore
from tests.conftest import need_tool

REMOTE = next((p for p in ("/usr/lib/systemd/systemd-journal-remote", "/lib/systemd/systemd-journal-remote")
               if os.access(p, os.X_OK)), None)
CLOCK = Clock(UTC, datetime(2024, 3, 5, tzinfo=UTC))
NOW = datetime(2024, 3, 5, tzinfo=UTC).timestamp()


def export_entry(usec: int, fields: list[tuple[str, bytes]]) -> bytes:
    """One entry of the journal export format; a value that is not plain text goes in the binary form."""
    out = b"__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=0123456789abcdef0123456789abcdef\n" % (
        usec, usec % 10**9)
    for name, value in fields:
        if b"\n" in value or not value.isascii():
            out += name.encode() + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
        else:
            out += name.encode() + b"=" + value + b"\n"
    return out + b"\n"


def build_journal(path: Path) -> None:
    if REMOTE is None:
        pytest.skip(reason="systemd-journal-remote is not installed (Debian package systemd-journal-remote)")
    need_tool("journalctl")
    base = 1709546400_000000  # 2024-03-04T10:00:00Z
    data = b"".join([
        export_entry(base, [("SYSLOG_IDENTIFIER", b"sshd"), ("_PID", b"11"),
                            ("MESSAGE", b"Failed password for root from 192.0.2.11 port 40011 ssh2")]),
        export_entry(base + 1_000_000, [("SYSLOG_IDENTIFIER", b"sshd"), ("_PID", b"12"),
                                        ("MESSAGE", b"Failed password for invalid user \xffx from 192.0.2.12 port 40012 "
                                                    b"ssh2")]),
        export_entry(base + 2_000_000, [("_COMM", b"sshd-session"), ("_PID", b"13"),
                                        ("MESSAGE", b"Accepted publickey for ops from 2001:db8::13 port 40013 ssh2: "
                                                    b"ED25519 SHA256:GGGGexample")]),
        export_entry(base + 3_000_000, [("SYSLOG_IDENTIFIER", b"systemd"), ("_PID", b"1"),
                                        ("MESSAGE", b"Failed password for root from 192.0.2.14 port 40014 ssh2")]),
    ])
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([REMOTE, "-o", str(path), "-"], input=data, check=True, capture_output=True)


EXPECTED = [
    {"line": 1, "service": "sshd", "outcome": "failure", "count": 1, "user": "root", "ip": "192.0.2.11", "port": 40011,
     "method": "password", "time": "2024-03-04T10:00:00+00:00"},
    {"line": 2, "service": "sshd", "outcome": "failure", "count": 1, "user": {"text": "\\xffx", "base64": "/3g="},
     "ip": "192.0.2.12", "port": 40012, "method": "password", "time": "2024-03-04T10:00:01+00:00"},
    {"line": 3, "service": "sshd", "outcome": "success", "count": 1, "user": "ops", "ip": "2001:db8::13", "port": 40013,
     "method": "publickey", "time": "2024-03-04T10:00:02+00:00"},
]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, object]], str]:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def utc_tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/timezone").write_text("Etc/UTC\n")
    return root


def test_journal_file_through_journalctl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal = tmp_path / "remote.journal"
    build_journal(journal)
    code, events, err = run(["logons", "parse", "--root", str(utc_tree(tmp_path / "tree")), "--journal-file",
                             str(journal)], capsys)
    assert code == 0, err
    assert [{k: v for k, v in e.items() if k != "file"} for e in events] == EXPECTED
    assert {e["file"] for e in events} == {str(journal)}


def test_tree_journal_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = utc_tree(tmp_path / "tree")
    build_journal(tree / "var/log/journal/0123456789abcdef0123456789abcdef/system.journal")
    code, events, err = run(["logons", "parse", "--root", str(tree), "--journal"], capsys)
    assert code == 0, err
    assert [{k: v for k, v in e.items() if k != "file"} for e in events] == EXPECTED
    assert {e["file"] for e in events} == {"journal"}


def test_unreadable_journal_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    need_tool("journalctl")
    bad = tmp_path / "bad.journal"
    bad.write_bytes(b"not a journal at all\n" * 10)
    code, events, err = run(["logons", "parse", "--journal-file", str(bad)], capsys)
    assert (code, events) == (2, [])
    assert err.count("\n") == 1 and err.startswith("hostguard: error: journalctl exited 1") and "Traceback" not in err


# -- a connection cut by a read, in the journal ---------------------------------------------------------------------

class Journal:
    """A journal file grown entry by entry (systemd-journal-remote appends to it), read into a logon store."""

    def __init__(self, tmp: Path) -> None:
        if REMOTE is None:
            pytest.skip(reason="systemd-journal-remote is not installed (Debian package systemd-journal-remote)")
        need_tool("journalctl")
        self.path, self.tmp, self.entries = tmp / "remote.journal", tmp, 0

    def append(self, *messages: str, program: bytes = b"sshd") -> None:
        data = b"".join(export_entry(1709546400_000000 + (self.entries + n) * 1000, [
            ("SYSLOG_IDENTIFIER", program), ("_PID", b"11"), ("MESSAGE", message.encode())])
            for n, message in enumerate(messages))
        self.entries += len(messages)
        subprocess.run([REMOTE, "-o", str(self.path), "-"], input=data, check=True, capture_output=True)

    def ingest(self, store: LogonStore) -> int:
        argv = journal_argv(None, [str(self.path)], None)
        return store.ingest_journal(argv, str(self.path), CLOCK, store.begin_batch(), OwnProbes([], 0), NOW).new_events


def journal_events(store: LogonStore) -> list[tuple[str, int]]:
    return [tuple(r) for r in store.db.execute("SELECT outcome, port FROM logon_events ORDER BY id")]


@pytest.mark.parametrize("same_process", [True, False], ids=["carried", "warmed"])
def test_a_journal_connection_cut_by_a_read_is_still_one_attempt(tmp_path: Path, same_process: bool) -> None:
    journal = Journal(tmp_path)
    journal.append(*(f"Failed password for root from 192.0.2.1 port {40100 + n} ssh2" for n in range(300)),
                   "Failed password for invalid user deploy from 192.0.2.7 port 40001 ssh2")
    state = StateStore(str(tmp_path / "state"))
    store = LogonStore(state, "h")
    try:
        assert journal.ingest(store) == 301
        journal.append("Connection closed by invalid user deploy 192.0.2.7 port 40001 [preauth]",
                       "Connection closed by invalid user deploy 192.0.2.7 port 40002 [preauth]")  # near miss
        if not same_process:
            state.close()
            state = StateStore(str(tmp_path / "state"))
            store = LogonStore(state, "h")
        assert journal.ingest(store) == 1
        assert journal_events(store)[-2:] == [("failure", 40001), ("failure", 40002)]
    finally:
        state.close()


def test_a_journal_followed_in_small_reads_forgets_connections_as_one_read_does(tmp_path: Path) -> None:
    """The same probe (address and port) twice, three generations of the parsers' table apart: one read of
    the journal gives two probes, so must a reader carried over many reads (its lines numbered on)."""
    journal = Journal(tmp_path)
    probe = "Did not receive identification string from 198.51.100.3 port 50123"
    state = StateStore(str(tmp_path / "state"))
    store = LogonStore(state, "h")
    try:
        journal.append(probe)
        assert journal.ingest(store) == 1
        for _ in range(3):
            journal.append(*["pam_unix(cron:session): session closed for user root"] * 12000, program=b"CRON")
            assert journal.ingest(store) == 0
        journal.append(probe)
        assert journal.ingest(store) == 1
        assert journal_events(store) == [("probe", 50123), ("probe", 50123)]
    finally:
        state.close()
