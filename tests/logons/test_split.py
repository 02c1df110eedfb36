"""`logons parse` of a large file in two processes gives exactly the one-pass answer: the same bytes out and
the same counts, whether the states meet early, never, or the child dies."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hostguard.logons import split
from hostguard.logons.sources import MAX_LINE, SourceStats
from hostguard.logons.split import Written, write_events
from hostguard.logons.timestamps import Clock

CLOCK = Clock(UTC, datetime(2024, 3, 5, tzinfo=UTC))


def attacked_log(count: int, seed: int = 5) -> bytes:
    """An auth.log under attack: bot sessions (a few failures, then sshd's close), probes, PAM lines, noise,
    repeats, one invalid byte, in mixed stamp formats."""
    rng = random.Random(seed)
    out: list[bytes] = []
    while len(out) < count:
        ip = rng.choice([f"198.51.100.{rng.randrange(1, 40)}", f"2001:db8::{rng.randrange(1, 300):x}"])
        port, pid, user = rng.randrange(1024, 65535), rng.randrange(100, 30000), rng.choice(["root", "b\xe9b", "x y"])
        session = [f"sshd[{pid}]: Invalid user {user} from {ip} port {port}"] * rng.randrange(2)
        session += [f"sshd[{pid}]: pam_unix(sshd:auth): authentication failure; logname= rhost={ip}  user={user}",
                    f"sshd[{pid}]: Failed password for {user} from {ip} port {port} ssh2"] * rng.randrange(4)
        session += [rng.choice([f"sshd[{pid}]: Connection closed by authenticating user {user} {ip} port {port} [preauth]",
                                f"sshd[{pid}]: Disconnected from invalid user {user} {ip} port {port} [preauth]",
                                f"sshd[{pid}]: Connection closed by {ip} port {port} [preauth]"])]
        session.insert(rng.randrange(len(session) + 1), rng.choice([
            f"vsftpd[{pid}]: pam_unix(vsftpd:auth): authentication failure; logname= uid=0 rhost={ip}  user={user}",
            "last message repeated 2 times",
            f"CRON[{pid}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)"]))
        for message in session:
            i = len(out)
            stamp = f"Mar  4 10:{i // 60 % 60:02d}:{i % 60:02d}" if i % 2 else f"2024-03-04T10:00:00.{i:06d}+00:00"
            out.append(f"{stamp} gw.test {message}".encode("utf-8", "surrogateescape"))
    out[count // 3] = b"Mar  4 10:00:00 gw.test sshd[1]: Failed password for \xff\xfe from 192.0.2.1 port 22 ssh2"
    return b"\n".join(out) + b"\n"


def run(path: Path, **options: object) -> tuple[bytes, str, Written]:
    """Parse ``path`` as `logons parse` writes to a terminal or pipe: text over a byte buffer."""
    sink = io.BytesIO()
    out = io.TextIOWrapper(sink, encoding="utf-8", errors="strict", write_through=False)
    stats = SourceStats(str(path))
    written = write_events(str(path), str(path), CLOCK, None, out, stats, min_bytes=0, checkpoint=250,
                           **options)  # type: ignore[arg-type]
    out.flush()
    return sink.getvalue(), stats.summary(), written


def test_split_parse_is_the_one_pass_answer_and_takes_over_early(tmp_path: Path) -> None:
    path = tmp_path / "auth.log"
    path.write_bytes(attacked_log(40000))
    one_pass, one_summary, alone = run(path, split=False)
    both, summary, written = run(path, split=True)
    assert alone == Written()
    assert written.split is not None and written.taken_from is not None  # the child's second half was used
    assert both == one_pass and summary == one_summary
    assert one_pass.count(b"\n") > 1000 and b'"base64"' in one_pass  # real events, the bad byte among them


def test_a_session_across_the_split_still_reads_as_one_pass(tmp_path: Path) -> None:
    # the close in the second half belongs to a session that failed in the first: one pass gives no event
    # for it; the child, alone, would. The states differ until that session is gone: the main process reads on.
    first = attacked_log(19000, seed=1)
    opened = b"Mar  4 11:00:00 gw.test sshd[9]: Failed password for root from 192.0.2.200 port 4000 ssh2\n"
    closed = b"Mar  4 11:00:09 gw.test sshd[9]: Connection closed by authenticating user root 192.0.2.200 port 4000" \
             b" [preauth]\n"
    path = tmp_path / "auth.log"
    between = attacked_log(2000, seed=3)
    path.write_bytes(first + opened + between + closed + attacked_log(20000, seed=2))
    one_pass, one_summary, _ = run(path, split=False)
    both, summary, written = run(path, split=True)
    assert both == one_pass and summary == one_summary
    assert b'"ip": "192.0.2.200"' in one_pass and one_pass.count(b'"ip": "192.0.2.200"') == 1
    assert written.split is not None and written.taken_from is not None
    assert len(first) < written.split <= len(first + opened + between)  # the session is open across the split


def test_states_that_never_meet_mean_one_pass(tmp_path: Path) -> None:
    # a session left open in the first half stays in the main process's table until it expires (more lines
    # than this file has): the digests never agree, so the main process reads the whole file itself
    stale = b"Mar  4 09:00:00 gw.test sshd[3]: Invalid user ghost from 192.0.2.99 port 999\n"
    quiet = b"".join(b"Mar  4 10:00:%02d gw.test sshd[%d]: Failed password for root from 192.0.2.%d port %d ssh2\n"
                     % (i % 60, 10 + i, 1 + i % 50, 2000 + i % 50) for i in range(3000))
    path = tmp_path / "auth.log"
    path.write_bytes(stale + quiet)
    one_pass, one_summary, _ = run(path, split=False)
    both, summary, written = run(path, split=True)
    assert both == one_pass and summary == one_summary
    assert written.split is not None and written.taken_from is None


def test_a_failed_child_means_one_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(split, "_child", broken)
    path = tmp_path / "auth.log"
    path.write_bytes(attacked_log(3000))
    one_pass, one_summary, _ = run(path, split=False)
    both, summary, written = run(path, split=True)
    assert both == one_pass and summary == one_summary
    assert written.split is not None and written.taken_from is None


def test_over_long_lines_on_both_sides_are_counted_once(tmp_path: Path) -> None:
    garbage = b"Mar  4 10:00:00 gw.test sshd[1]: " + b"A" * (MAX_LINE + 10) + b"\n"
    body = attacked_log(1500)
    path = tmp_path / "auth.log"
    path.write_bytes(garbage + body + garbage + body + garbage)
    one_pass, one_summary, _ = run(path, split=False)
    both, summary, written = run(path, split=True)
    assert both == one_pass and summary == one_summary and "3 too long (skipped)" in summary
    assert written.split is not None


def test_small_compressed_or_one_cpu_files_are_not_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    packed = tmp_path / "auth.log.2.gz"
    packed.write_bytes(gzip.compress(attacked_log(500)))
    assert run(packed, split=True)[2] == Written()  # a compressed file cannot be read from its middle
    plain = tmp_path / "auth.log"
    plain.write_bytes(attacked_log(500))
    monkeypatch.setattr(split, "usable_cpus", lambda: 1)
    assert run(plain)[2] == Written()
    stats = SourceStats("x")
    assert write_events(str(plain), "x", CLOCK, None, io.StringIO(), stats) == Written()  # below MIN_SPLIT_BYTES
