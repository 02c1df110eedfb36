"""Timestamps: round trips of every stamp form, the year inferred for classic syslog, the tree's zone."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.host.base import RootHost
from hostguard.logons.records import read_record
from hostguard.logons.timestamps import Clock, host_timezone

MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
TIMES = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 12, 31))
ZONES = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"])


@settings(max_examples=300)
@given(TIMES, ZONES, st.integers(min_value=0, max_value=360 * 24 * 3600))
def test_classic_stamp_gets_the_latest_year_not_after_the_reference(when: datetime, zone_name: str, lag: int) -> None:
    zone = ZoneInfo(zone_name)
    local = when.replace(microsecond=0, tzinfo=zone)
    reference = local + timedelta(seconds=lag)  # the file was written up to a year after the line
    clock = Clock(zone, reference)
    got = clock.classic(MONTH_NAMES[local.month - 1], local.day, local.hour, local.minute, local.second)
    assert got is not None
    assert (got.month, got.day, got.hour, got.minute, got.second) == (local.month, local.day, local.hour,
                                                                       local.minute, local.second)
    assert got.replace(tzinfo=None) <= (reference + timedelta(days=1)).replace(tzinfo=None) + timedelta(hours=1)
    if not (local.month == 2 and local.day == 29):
        assert got.year == local.year  # within a year of the reference: the right year, never one too early


@settings(max_examples=300)
@given(TIMES, st.integers(min_value=-14 * 60, max_value=14 * 60), st.booleans())
def test_rfc3339_stamps_round_trip(when: datetime, offset_minutes: int, colon: bool) -> None:
    aware = when.replace(tzinfo=UTC).astimezone(__import__("datetime").timezone(timedelta(minutes=offset_minutes)))
    text = aware.isoformat()
    if not colon:  # journalctl -o short-iso prints +0100
        text = text[:-3] + text[-2:]
    record = read_record(f"{text} gw.test sshd[1]: hello", Clock(UTC, datetime.now(UTC)))
    # the contract's text of the same instant, whether the stamp was reused as it is or written again
    assert record is not None and record.time == aware.isoformat()
    assert record.program == "sshd" and record.message == "hello"


@settings(max_examples=200)
@given(st.text(max_size=80))
def test_any_text_gives_a_record_or_none(text: str) -> None:
    clock = Clock(UTC, datetime(2024, 3, 5, tzinfo=UTC))
    record = read_record(text, clock)
    assert record is None or isinstance(record.message, str)


def test_a_line_after_the_reference_is_last_year() -> None:
    clock = Clock(UTC, datetime(2024, 3, 5, 12, tzinfo=UTC))
    assert clock.classic("Mar", 7, 10, 0, 0) == datetime(2023, 3, 7, 10, tzinfo=UTC)
    assert clock.classic("Mar", 6, 10, 0, 0) == datetime(2024, 3, 6, 10, tzinfo=UTC)  # within the day of slack
    assert clock.classic("Feb", 30, 10, 0, 0) is None
    assert clock.classic("Foo", 1, 10, 0, 0) is None


def test_zone_comes_from_the_tree(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    zoneinfo = tree / "usr/share/zoneinfo/Asia"
    zoneinfo.mkdir(parents=True)
    source = Path("/usr/share/zoneinfo/Asia/Tokyo")
    shutil.copy(source, zoneinfo / "Tokyo")
    (tree / "etc/localtime").symlink_to("/usr/share/zoneinfo/Asia/Tokyo")  # absolute: resolved inside the tree
    zone, where = host_timezone(RootHost(str(tree)))
    assert where == "/etc/localtime"
    assert datetime(2024, 3, 4, 12, tzinfo=zone).utcoffset() == timedelta(hours=9)


def test_zone_from_etc_timezone_and_the_fallback(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    assert host_timezone(RootHost(str(tree))) == (UTC, "default (UTC)")
    (tree / "usr/share/zoneinfo/America").mkdir(parents=True)
    shutil.copy("/usr/share/zoneinfo/America/New_York", tree / "usr/share/zoneinfo/America/New_York")
    (tree / "etc/timezone").write_text("America/New_York\n")
    zone, where = host_timezone(RootHost(str(tree)))
    assert where == "/etc/timezone" and datetime(2024, 7, 4, tzinfo=zone).utcoffset() == timedelta(hours=-4)
    (tree / "etc/localtime").write_bytes(b"not a TZif file")  # a broken localtime falls back to the name
    assert host_timezone(RootHost(str(tree)))[1] == "/etc/timezone"
    (tree / "etc/timezone").write_text("../../../etc/passwd\n")  # never a path out of the zoneinfo tree
    assert host_timezone(RootHost(str(tree))) == (UTC, "default (UTC)")
