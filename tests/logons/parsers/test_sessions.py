"""sshd's session table forgets a session not heard of for KEPT generations of lines (sshd itself ends an
unauthenticated connection after LoginGraceTime), at the same lines however the stream is read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hostguard.logons.parse import StreamReader
from hostguard.logons.parsers import GENERATION, KEPT
from hostguard.logons.parsers.sshd import MAX_SESSIONS
from hostguard.logons.sources import SourceStats
from hostguard.logons.timestamps import Clock

CLOCK = Clock(UTC, datetime(2024, 3, 5, tzinfo=UTC))
FAILED = "Mar  4 10:00:00 gw.test sshd[5]: Failed password for root from 192.0.2.5 port 2222 ssh2"
CLOSED = "Mar  4 10:00:09 gw.test sshd[5]: Connection closed by authenticating user root 192.0.2.5 port 2222 [preauth]"
NOISE = "Mar  4 10:00:05 gw.test CRON[9]: pam_unix(cron:session): session closed for user root"


def close_events(gap: int, block: int) -> list[int]:
    """The lines of the events of a failure, ``gap`` noise lines, then the same session's close, read in
    blocks of ``block`` lines."""
    lines = [FAILED] + [NOISE] * gap + [CLOSED]
    blocks = [(i + 1, "\n".join(lines[i:i + block]).encode()) for i in range(0, len(lines), block)]
    return [event.line for event in StreamReader(CLOCK).events(blocks, "x", SourceStats("x"))]


@pytest.mark.parametrize("block", [1, 777, 100_000])
def test_a_close_long_after_its_session_is_a_failure_of_its_own(block: int) -> None:
    gap = (KEPT + 1) * GENERATION
    assert close_events(gap, block) == [1, gap + 2]  # the session was forgotten: its close is an attempt


@pytest.mark.parametrize("block", [1, 777, 100_000])
def test_a_close_within_the_window_adds_nothing(block: int) -> None:
    gap = (KEPT - 1) * GENERATION
    assert close_events(gap, block) == [1]


def test_a_flood_of_connections_keeps_the_tables_bounded() -> None:
    # every line a new connection (own port, own pid) that never closes: what the tables hold stays bounded
    lines = [f"Mar  4 10:00:00 gw.test sshd[{1000 + i}]: Failed password for root from 192.0.2.{i % 250 + 1} "
             f"port {1024 + i % 60000} ssh2" for i in range(3 * GENERATION + 5)]
    reader = StreamReader(CLOCK)
    events = list(reader.events([(1, "\n".join(lines).encode())], "x", SourceStats("x")))
    sessions, by_pid, _ = reader.parser.sshd.state()
    assert len(events) == len(lines)
    assert len(sessions) == MAX_SESSIONS  # the oldest evicted, one by one
    assert len(by_pid) == MAX_SESSIONS
    assert dict(by_pid)[1000 + len(lines) - 1] == (f"192.0.2.{(len(lines) - 1) % 250 + 1}",
                                                     str(1024 + (len(lines) - 1) % 60000))
