"""`hostguard logons parse` as users run it: JSON Lines on stdout, the damage summary on stderr, one-line
errors with exit 2 for bad input."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hostguard.cli import main

LINE = "Mar  4 10:00:01 gw.test sshd[1]: Failed password for root from 192.0.2.10 port 50100 ssh2\n"
OK = "Mar  4 10:05:00 gw.test sshd[2]: Accepted publickey for ops from 192.0.2.11 port 50101 ssh2: ED25519 SHA256:x\n"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, object]], str]:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def utc_tree(tmp_path: Path) -> Path:
    (tmp_path / "tree/etc").mkdir(parents=True)
    (tmp_path / "tree/etc/timezone").write_text("Etc/UTC\n")
    return tmp_path / "tree"


def test_files_in_order_with_rotation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "auth.log.2.gz"
    old.write_bytes(gzip.compress(LINE.encode()))
    new = tmp_path / "auth.log"
    new.write_text("Mar  4 10:04:00 gw.test CRON[9]: pam_unix(cron:session): session opened for user root\n" + OK)
    for path in (old, new):
        os.utime(path, (1709596800, 1709596800))  # 2024-03-05: the year of their classic stamps
    code, events, err = run(["logons", "parse", str(old), str(new), "--root", str(utc_tree(tmp_path)),
                             "--format", "jsonl"], capsys)
    assert (code, err) == (0, "")
    assert events == [
        {"file": str(old), "line": 1, "service": "sshd", "outcome": "failure", "count": 1, "user": "root",
         "ip": "192.0.2.10", "port": 50100, "method": "password", "time": "2024-03-04T10:00:01+00:00"},
        {"file": str(new), "line": 2, "service": "sshd", "outcome": "success", "count": 1, "user": "ops",
         "ip": "192.0.2.11", "port": 50101, "method": "publickey", "time": "2024-03-04T10:05:00+00:00"},
    ]


def test_reference_sets_the_year(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "auth.log"
    log.write_text(LINE)
    code, events, _ = run(["logons", "parse", str(log), "--root", str(utc_tree(tmp_path)),
                           "--reference", "2019-06-01T00:00:00+00:00"], capsys)
    assert code == 0 and [e["time"] for e in events] == ["2019-03-04T10:00:01+00:00"]


def test_damage_is_summed_up_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "auth.log"
    log.write_bytes(b"\x00\x00" + LINE.encode() + b"x" * 200_000 + b"\n" + b"\xff\n")
    code, events, err = run(["logons", "parse", str(log), "--root", str(utc_tree(tmp_path))], capsys)
    assert code == 0 and [e["line"] for e in events] == [1]
    assert err == (f"hostguard: logons parse: {log}: 3 lines, 1 events, 1 too long (skipped), 1 with NUL bytes, "
                   "1 not UTF-8\n")


def test_stats_on_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "auth.log"
    log.write_text(LINE + OK)
    code, events, err = run(["logons", "parse", str(log), "--stats", "--root", str(utc_tree(tmp_path))], capsys)
    assert code == 0 and len(events) == 2 and err == f"hostguard: logons parse: {log}: 2 lines, 2 events\n"


@pytest.mark.parametrize("argv,message", [
    (["logons", "parse"], "logons parse needs at least one FILE"),
    (["logons"], "logons needs a subcommand: parse"),
    (["logons", "parse", "{tmp}/missing.log"], "{tmp}/missing.log: no such file"),
    (["logons", "parse", "{tmp}"], "{tmp}: not a regular file"),
    (["logons", "parse", "{tmp}/auth.log", "--reference", "yesterday"], "--reference 'yesterday': not an ISO 8601 time"),
    (["logons", "parse", "{tmp}/auth.log", "--format", "csv"], "argument --format: invalid choice"),
    (["logons", "parse", "{tmp}/auth.log", "--root", "{tmp}/nope"], "--root {tmp}/nope: not a directory"),
    (["logons", "parse", "{tmp}/auth.log", "--since", "today"], "--since applies to --journal"),
    (["logons", "parse", "{tmp}/auth.log", "{tmp}/missing.log"], "{tmp}/missing.log: no such file"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                          message: str) -> None:
    (tmp_path / "auth.log").write_text(LINE)
    code, events, err = run([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert code == 2 and events == []  # nothing printed before the error: every file is checked first
    assert err.startswith("hostguard: error: " + message.replace("{tmp}", str(tmp_path))) and err.count("\n") == 1


def test_no_traceback_from_the_console_script(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "hostguard.cli", "logons", "parse", str(tmp_path / "nope")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"hostguard: error: {tmp_path / 'nope'}: no such file\n"


def test_a_pipe_is_read_once(tmp_path: Path) -> None:
    """`logons parse <(zcat auth.log.2.gz)`: the pipe is checked without being read, then read once."""
    packed = tmp_path / "auth.log.2.gz"
    packed.write_bytes(gzip.compress(LINE.encode()))
    command = (f"{sys.executable} -m hostguard.cli logons parse --root {utc_tree(tmp_path)} "
               f"--reference 2024-03-05T00:00:00+00:00 <(zcat {packed})")
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    [event] = [json.loads(line) for line in proc.stdout.splitlines()]
    assert (event["line"], event["ip"], event["time"]) == (1, "192.0.2.10", "2024-03-04T10:00:01+00:00")
    assert event["file"].startswith("/dev/fd/")
