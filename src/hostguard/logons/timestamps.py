"""Log timestamps to aware datetimes: the tree's time zone, and the year classic syslog leaves out.

Classic syslog (``Mar  4 10:00:00``, also ``journalctl -o short``) has neither year nor zone. The zone is
the host's (``/etc/localtime`` of the tree, read through the :class:`~hostguard.host.base.Host` so a
``--root`` image is read with its own zone, not the scanning machine's). The year is inferred against a
*reference time* (the file's mtime: when it was last written, so its last line is no later than that):
the latest year that does not put the line more than a day after the reference. So a log that runs from
December into January, read in January, gives December lines the previous year; a ``Feb 29`` line goes back
to the last leap year. RFC 3339 stamps (rsyslog's high-precision format, ``-o short-iso*``) carry their own
offset; a zone-less ISO stamp (MariaDB, PostgreSQL with a zone name) is read in the tree's zone.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from hostguard.host.base import FileMissing, Host, HostError

MONTHS = {name: i for i, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
SLACK = timedelta(days=1)  # a line may be stamped a little after the file's mtime (clock steps, buffering)
ZONE_NAME = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*")
UTC_NAMES = frozenset({"UTC", "GMT", "Z", "UCT", "Etc/UTC"})


def host_timezone(host: Host) -> tuple[tzinfo, str]:
    """The tree's local time zone and where it came from (``/etc/localtime``, ``/etc/timezone`` or the
    UTC fallback when neither names a valid zone: a minimal container has neither, and runs in UTC)."""
    try:
        data = host.read_bytes("/etc/localtime", limit=1 << 20)
        return ZoneInfo.from_file(io.BytesIO(data), key="localtime"), "/etc/localtime"
    except (HostError, ValueError, OSError):
        pass
    try:
        name = (host.read_optional("/etc/timezone") or "").strip()
    except HostError:
        name = ""
    if name and ZONE_NAME.fullmatch(name) and ".." not in name:
        if name in UTC_NAMES:
            return UTC, "/etc/timezone"
        try:
            data = host.read_bytes(f"/usr/share/zoneinfo/{name}", limit=1 << 20)
            return ZoneInfo.from_file(io.BytesIO(data), key=name), "/etc/timezone"
        except (FileMissing, HostError, ValueError, OSError):
            pass
    return UTC, "default (UTC)"


class Clock:
    """Turns the timestamps of one stream into aware datetimes.

    ``zone`` is the tree's time zone, ``reference`` the latest time the stream's lines can carry (a file's
    mtime; now for the live journal). Years inferred per (month, day) are cached: a log has few distinct days.
    """

    def __init__(self, zone: tzinfo, reference: datetime) -> None:
        self.zone = zone
        self.reference = reference if reference.tzinfo else reference.replace(tzinfo=zone)
        self._years: dict[tuple[int, int, int], int | None] = {}

    def classic(self, month: str, day: int, hour: int, minute: int, second: int, micro: int = 0) -> datetime | None:
        """A ``Mon dd HH:MM:SS`` stamp (year inferred), None when it names no real time."""
        mon = MONTHS.get(month)
        if mon is None or not (0 <= hour < 24 and 0 <= minute < 60 and 0 <= second < 61):
            return None
        second = min(second, 59)  # a leap second is kept as :59
        key = (mon, day, hour)
        year = self._years.get(key, -1)
        if year == -1:
            year = self._years[key] = self._infer_year(mon, day, hour)
        if year is None:
            return None
        return datetime(year, mon, day, hour, minute, second, micro, tzinfo=self.zone)

    def _infer_year(self, mon: int, day: int, hour: int) -> int | None:
        limit = self.reference + SLACK
        for year in range(self.reference.astimezone(self.zone).year + 1, self.reference.year - 9, -1):
            try:
                when = datetime(year, mon, day, hour, tzinfo=self.zone)
            except ValueError:  # Feb 29 in a common year, Apr 31: try an earlier year
                continue
            if when <= limit:
                return year
        return None

    def iso(self, text: str) -> datetime | None:
        """An ISO 8601 / RFC 3339 stamp (``T`` or space, ``.`` or ``,`` fraction, ``Z``, ``+01:00`` or ``+0100``
        offset); one without an offset is local time of the tree."""
        try:
            when = datetime.fromisoformat(text.replace(",", ".", 1))
        except ValueError:
            return None
        return when if when.tzinfo else when.replace(tzinfo=self.zone)

    def named(self, text: str, zone_name: str) -> datetime | None:
        """A zone-less ISO stamp followed by a zone name (PostgreSQL ``%m``, ``-o short-full``): UTC names are
        UTC; any other abbreviation (``CET``) is ambiguous worldwide and is read as the tree's zone."""
        when = self.iso(text)
        if when is None:
            return None
        return when.replace(tzinfo=UTC) if zone_name in UTC_NAMES else when

    def epoch(self, seconds: float) -> datetime | None:
        """Seconds since the epoch (``-o short-unix``, journal ``__REALTIME_TIMESTAMP`` / 1e6)."""
        try:
            return datetime.fromtimestamp(seconds, UTC).astimezone(self.zone)
        except (OverflowError, OSError, ValueError):
            return None


def fraction_micro(text: str | None) -> int:
    """Microseconds of a fraction's digits (``123`` -> 123000; more than six digits are cut)."""
    if not text:
        return 0
    return int((text + "000000")[:6])


def iso_text(when: datetime | None) -> str | None:
    """The contract's form of a time: ISO 8601 with its offset."""
    return None if when is None else when.isoformat()
