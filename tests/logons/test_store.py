"""The logon store never stores an attempt twice: the same file read again, a file that grew (also by an
unterminated line), rotated copies (``.1`` plain, ``.2.gz`` compressed), copytruncate, a file whose start
changed; and, by hypothesis, any interleaving of appends, rotations and re-reads."""

from __future__ import annotations

import gzip
import os
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostguard.detect.probes import OwnProbes
from hostguard.logons.store import HEAD, WARM, Ingested, LogonStore
from hostguard.logons.timestamps import Clock
from hostguard.store.state import MIGRATIONS, StateStore

CLOCK = Clock(UTC, datetime(2024, 3, 5, tzinfo=UTC))
NOW = datetime(2024, 3, 5, tzinfo=UTC).timestamp()


def line(n: int) -> str:
    """An attempt line whose port (50000 + n) makes it unique: the store's events are compared by it."""
    return f"Mar  4 10:{n // 60 % 60:02d}:{n % 60:02d} gw.test sshd[{n + 1}]: Failed password for root from 192.0.2.1 " \
           f"port {50000 + n} ssh2\n"


def text(first: int, last: int) -> str:
    return "".join(line(n) for n in range(first, last))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LogonStore]:
    state = StateStore(str(tmp_path / "state"))
    try:
        yield LogonStore(state, "host-a")
    finally:
        state.close()


def ingest(store: LogonStore, path: Path) -> Ingested:
    return store.ingest_file(str(path), CLOCK, store.begin_batch(), OwnProbes([], 0), NOW)


def ports(store: LogonStore) -> list[int]:
    return [r[0] - 50000 for r in store.db.execute("SELECT port FROM logon_events ORDER BY port")]


def test_the_same_file_twice_stores_each_attempt_once(store: LogonStore, tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text(text(0, 5))
    first = ingest(store, log)
    assert (first.status, first.new_events, first.lines) == ("new", 5, 5)
    again = ingest(store, log)
    assert (again.status, again.new_events) == ("continued", 0)
    assert ports(store) == [0, 1, 2, 3, 4]


def test_a_grown_file_is_read_on_and_an_unterminated_line_waits(store: LogonStore, tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text(text(0, 3) + line(3)[:30])  # sshd is writing line 4
    assert ingest(store, log).new_events == 3
    with log.open("a") as f:
        f.write(line(3)[30:] + text(4, 6))
    grown = ingest(store, log)
    assert (grown.status, grown.new_events) == ("continued", 3)
    assert ports(store) == [0, 1, 2, 3, 4, 5]
    lines, offset = store.db.execute("SELECT lines, offset FROM logon_files").fetchone()
    assert (lines, offset) == (6, log.stat().st_size)


def test_rotated_plain_and_compressed_copies_are_recognised(store: LogonStore, tmp_path: Path) -> None:
    log, one, two = tmp_path / "auth.log", tmp_path / "auth.log.1", tmp_path / "auth.log.2.gz"
    log.write_text(text(0, 5))
    ingest(store, log)
    log.rename(one)  # logrotate: rename; sshd wrote two more lines before it reopened its log
    with one.open("a") as f:
        f.write(text(5, 7))
    log.write_text(text(7, 9))
    assert (ingest(store, one).status, ingest(store, log).status) == ("continued", "new")
    assert ports(store) == list(range(9))
    with one.open("rb") as src:  # the next rotation compresses it
        two.write_bytes(gzip.compress(src.read()))
    one.unlink()
    result = ingest(store, two)
    assert (result.status, result.new_events, result.known_events) == ("reread", 0, 7)
    assert ports(store) == list(range(9))


def test_copytruncate_makes_a_new_file_and_the_copy_is_read_on(store: LogonStore, tmp_path: Path) -> None:
    log, copy = tmp_path / "auth.log", tmp_path / "auth.log.1"
    log.write_text(text(0, 5))
    ingest(store, log)
    with log.open("a") as f:
        f.write(text(5, 6))
    shutil.copyfile(log, copy)
    with log.open("r+") as f:  # copytruncate, then the daemon goes on writing at the start
        f.truncate(0)
    log.write_text(text(6, 8))
    assert ingest(store, log).status == "new"
    copied = ingest(store, copy)
    assert (copied.status, copied.new_events) == ("continued", 1)
    assert ports(store) == list(range(8))


def test_a_file_whose_start_changed_is_a_new_file(store: LogonStore, tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text(text(0, 5))
    ingest(store, log)
    log.write_text(text(100, 110))  # bigger, but another start: not the same file grown
    result = ingest(store, log)
    assert (result.status, result.new_events) == ("new", 10)
    assert ports(store) == [0, 1, 2, 3, 4, *range(100, 110)]
    assert store.db.execute("SELECT COUNT(*) FROM logon_files").fetchone()[0] == 2


def test_a_small_file_keeps_its_identity_as_it_grows_past_the_digest(store: LogonStore, tmp_path: Path) -> None:
    log, one = tmp_path / "auth.log", tmp_path / "auth.log.1"
    log.write_text(text(0, 2))
    ingest(store, log)
    with log.open("a") as f:
        f.write(text(2, 60))
    assert log.stat().st_size > HEAD
    assert ingest(store, log).status == "continued"
    assert store.db.execute("SELECT head_len FROM logon_files").fetchone()[0] == HEAD
    log.rename(one)
    assert ingest(store, one).new_events == 0
    assert ports(store) == list(range(60))


def test_an_empty_file_records_nothing(store: LogonStore, tmp_path: Path) -> None:
    (tmp_path / "auth.log").write_text("")
    assert ingest(store, tmp_path / "auth.log").status == "empty"
    assert store.db.execute("SELECT COUNT(*) FROM logon_files").fetchone()[0] == 0


def test_upgrade_from_schema_6_keeps_the_rows_and_adds_the_logon_tables(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir()
    db = sqlite3.connect(directory / "state.db", isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:6], start=1):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")
    db.execute("INSERT INTO probes(host_key, service, endpoint, account, started, finished, attempts, outcome) "
               "VALUES ('h', 'mysql', 'tcp 127.0.0.1:3306', 'shop', '2024-05-03T12:00:00+00:00', NULL, 3, 'not_found')")
    db.close()
    state = StateStore(str(directory))
    try:
        assert state.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert [p.account for p in state.probes("h")] == ["shop"]
        names = {r[0] for r in state.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"logon_files", "logon_events", "logon_alerts", "logon_baseline"} <= names
    finally:
        state.close()


# -- any interleaving ----------------------------------------------------------------------------------------

OPS = st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(1, 40), st.booleans()),   # lines, and whether the last is cut
    st.tuples(st.just("rotate"), st.just(0), st.booleans()),           # rename (and compress .1 -> .2.gz)
    st.tuples(st.just("copytruncate"), st.just(0), st.just(False)),
    st.tuples(st.just("ingest"), st.integers(0, 2), st.just(False)),   # which file: live, .1, .2.gz
), max_size=25)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_any_interleaving_of_rereads_never_duplicates(tmp_path_factory: pytest.TempPathFactory,
                                                      ops: list[tuple[str, int, bool]]) -> None:
    tmp = tmp_path_factory.mktemp("logs")
    live, one, two = tmp / "auth.log", tmp / "auth.log.1", tmp / "auth.log.2.gz"
    live.write_text("")
    pending = ""   # the cut line being written
    written = 0
    state = StateStore(str(tmp / "state"))
    store = LogonStore(state, "h")
    try:
        for op, n, flag in ops:
            if op == "append":
                body = pending + text(written, written + n)
                written += n
                pending = ""
                if flag:
                    pending = line(written)[20:]
                    body += line(written)[:20]
                    written += 1
                with live.open("a") as f:
                    f.write(body)
            elif op == "rotate":
                if flag and one.exists():
                    two.write_bytes(gzip.compress(one.read_bytes()))
                if one.exists():
                    one.unlink()
                live.rename(one)
                live.write_text(pending)  # the cut line's rest lands in the new file: a garbage first line
                pending = ""
            elif op == "copytruncate":
                shutil.copyfile(live, one)
                with live.open("r+") as f:
                    f.truncate(0)
            else:
                path = (live, one, two)[n]
                if path.exists():
                    ingest(store, path)
            stored = ports(store)
            assert len(stored) == len(set(stored)), f"duplicates after {op}"
        with live.open("a") as f:  # finish the cut line, then read everything there is
            f.write(pending + "\n")
        for path in (two, one, live):
            if path.exists():
                ingest(store, path)
        stored = ports(store)
        assert len(stored) == len(set(stored))
        present = set()
        for path in (live, one, two):
            if path.exists():
                data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
                present |= {int(w.split(b"port ")[1].split()[0]) - 50000 for w in data.splitlines()
                            if w.startswith(b"Mar ") and w.endswith(b"ssh2")}
        assert present <= set(stored)
    finally:
        state.close()
        for path in (live, one, two):
            if path.exists():
                os.unlink(path)


# -- a connection cut by a read ------------------------------------------------------------------------------------

def sshd(n: int, message: str) -> str:
    return f"Mar  4 10:00:{n % 60:02d} gw.test sshd[{700 + n}]: {message}\n"


FAILED = "Failed password for invalid user deploy from 192.0.2.7 port {port} ssh2"
CLOSED = "Connection closed by invalid user deploy 192.0.2.7 port {port} [preauth]"
SHAPES = (FAILED, CLOSED, "Failed password for root from 192.0.2.7 port {port} ssh2",
          "maximum authentication attempts exceeded for root from 192.0.2.7 port {port} ssh2 [preauth]",
          "Disconnecting authenticating user root 192.0.2.7 port {port}: Too many authentication failures [preauth]",
          "Received disconnect from 192.0.2.7 port {port}:11: Bye Bye [preauth]",
          "Connection closed by 192.0.2.7 port {port}", "Accepted password for root from 192.0.2.7 port {port} ssh2")


def stored_events(store: LogonStore) -> list[tuple[int, str, int]]:
    return [tuple(r) for r in store.db.execute("SELECT line, outcome, port FROM logon_events ORDER BY line")]


@pytest.mark.parametrize("same_process", [True, False], ids=["carried", "warmed"])
def test_a_connection_cut_by_a_read_is_still_one_attempt(tmp_path: Path, same_process: bool) -> None:
    """The close of a connection whose failure the last read stored adds nothing, whether this store read it
    (its parser carried) or a new process reads on (the bytes before the offset read again); the close of a
    connection that showed no attempt is one (near miss)."""
    log = tmp_path / "auth.log"
    log.write_text(text(0, 1000) + sshd(3, FAILED.format(port=40001)))  # more than the bytes read again
    assert log.stat().st_size > WARM
    state = StateStore(str(tmp_path / "state"))
    store = LogonStore(state, "h")
    try:
        assert ingest(store, log).new_events == 1001
        with log.open("a") as f:
            f.write(sshd(4, CLOSED.format(port=40001)) + sshd(5, CLOSED.format(port=40002)))
        if not same_process:
            state.close()
            state = StateStore(str(tmp_path / "state"))
            store = LogonStore(state, "h")
        grown = ingest(store, log)
        assert (grown.status, grown.new_events) == ("continued", 1)
        assert stored_events(store)[-2:] == [(1001, "failure", 40001), (1003, "failure", 40002)]
    finally:
        state.close()


def test_lines_read_again_to_rebuild_the_state_are_not_counted_again(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_bytes(text(0, 2).encode() + b"\0\0" + line(2).encode() + line(3).encode().replace(b"root", b"r\xffoot"))
    state = StateStore(str(tmp_path / "state"))
    try:
        first = ingest(LogonStore(state, "h"), log)
        assert (first.stats.nul, first.stats.non_utf8) == (1, 1)
    finally:
        state.close()
    with log.open("a") as f:
        f.write(line(4))
    state = StateStore(str(tmp_path / "state"))
    try:
        store = LogonStore(state, "h")
        again = ingest(store, log)
        assert (again.new_events, again.stats.nul, again.stats.non_utf8, again.stats.damaged()) == (1, 0, 0, False)
        assert ports(store) == [0, 1, 2, 3, 4]
    finally:
        state.close()


@settings(max_examples=80, deadline=None)
@given(lines=st.lists(st.tuples(st.integers(0, len(SHAPES) - 1), st.integers(0, 3)), min_size=1, max_size=30),
       cuts=st.lists(st.integers(0, 30), max_size=6), carried=st.booleans())
def test_any_cuts_give_the_events_of_one_read(tmp_path_factory: pytest.TempPathFactory,
                                              lines: list[tuple[int, int]], cuts: list[int], carried: bool) -> None:
    """Read in pieces — by one store, or each piece by a new one — a log gives the events of one read of it."""
    tmp = tmp_path_factory.mktemp("cuts")
    body = [sshd(n, SHAPES[shape].format(port=40000 + port)) for n, (shape, port) in enumerate(lines)]
    whole, log = tmp / "whole.log", tmp / "auth.log"
    whole.write_text("".join(body))
    log.write_text("")
    reference = StateStore(str(tmp / "reference"))
    try:
        ingest(LogonStore(reference, "h"), whole)
        expected = stored_events(LogonStore(reference, "h"))
    finally:
        reference.close()
    state = StateStore(str(tmp / "state"))
    store = LogonStore(state, "h")
    try:
        written = 0
        for cut in [*sorted(cuts), len(body)]:
            with log.open("a") as f:
                f.write("".join(body[written:cut]))
            written = max(written, cut)
            ingest(store if carried else LogonStore(state, "h"), log)
        assert stored_events(store) == expected
    finally:
        state.close()
