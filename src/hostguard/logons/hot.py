"""The few line shapes that make up nearly all of an attacked server's auth.log, read in one step each.

A server on the internet logs mostly sshd's ``Failed password``, ``Invalid user`` and ``Connection closed
by ... [preauth]`` lines. The general path reads a line in three steps — the syslog header (``records``),
the program's parser, the message's pattern — and builds a record on the way. For these shapes one regular
expression over the whole line (the same stamp and host text as ``records.STAMP_TEXT`` in front) gives the
same fields at a fraction of the cost, and hands them to the same :class:`SshdParser` methods, so the session
logic is shared, not repeated.

The shapes are deliberately narrow: a user name without spaces or brackets, an address that is an IP, the
key suffix sshd prints after ``Accepted publickey``. A line they do not fit — a user name with spaces, a
host name (``UseDNS``), ``error:`` in front, another suffix — is read by the general path, so narrowing
a shape can only cost speed.

The same pattern also passes over *quiet* lines: lines the general path would read as no attempt whatever
came before them (cron's and systemd-logind's, PAM's session lines, sshd's own PAM lines), derived from the
dispatcher's data (``quiet_pattern``). A quiet line only clears what ``last message repeated`` repeats.

``tests/logons/test_hot.py`` holds the two paths to the same events and the same state, line by line, on
generated lines near every shape and every quiet form.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from hostguard.logons.events import Attempt
from hostguard.logons.parsers import StreamParser
from hostguard.logons.records import STAMP_TEXT

USER = r"[\w.@-]{0,64}"  # no spaces: sshd's greedy user-name patterns then split the line the same way
IP = r"\d{1,3}(?:\.\d{1,3}){3}|[\da-fA-F]{0,4}:[\da-fA-F:.]{1,45}"  # never bare digits, never a host name
# where text follows the address (": reason"), an address ending in ":" could split the line elsewhere for
# sshd's lazy address pattern: here it must end in a digit
IP_END = r"\d{1,3}(?:\.\d{1,3}){3}|[\da-fA-F]{0,4}:[\da-fA-F:.]{0,44}[\da-fA-F]"
PORT = r"\d{1,5}"
SSHD_SHAPES = (
    rf"(?P<verdict>Failed|Accepted) (?P<method>[\w-]{{1,32}}(?:/[\w-]{{1,32}})?) for (?:invalid user )?"
    rf"(?P<user>{USER}) from (?P<addr>{IP}) port (?P<port>{PORT}) ssh2(?:: [A-Z][A-Z0-9-]{{0,31}} [\w:+/=]{{1,128}})?"
    rf"|Invalid user (?P<iuser>{USER}) from (?P<iaddr>{IP}) port (?P<iport>{PORT})"
    rf"|(?:Connection closed by|Disconnected from|Connection reset by) (?P<kind>authenticating user|invalid user|user)"
    rf" (?P<cuser>{USER}) (?P<caddr>{IP}) port (?P<cport>{PORT})"
    rf"|Received disconnect from (?P<raddr>{IP_END}) port (?P<rport>{PORT}):\d{{1,5}}: .*?"
    rf"|Unable to negotiate with (?P<uaddr>{IP_END}) port (?P<uport>{PORT}): .*?"
)
FIELDS = ("stamp", "pid", "verdict", "method", "user", "addr", "port", "iuser", "iaddr", "iport", "kind", "cuser", "caddr",
          "cport", "raddr", "rport", "uaddr", "uport", "pre")


PROGRAM = r"[^\s\[:]{1,128}(?:\[\d{1,10}\])?:(?: )?+"  # records.SYSLOG's program, pid and colon (space taken as it does)


def sshd_pattern(programs: Iterable[str], quiet: str = "(?!)") -> re.Pattern[str]:
    """The whole-line pattern of the sshd shapes for the syslog programs of the sshd family, or of ``quiet``
    (after the header: see :func:`quiet_pattern`); its groups are :data:`FIELDS`, in that order, and no others
    (read at once with ``groups()``, the cheapest way out of a match: each group costs a string)."""
    names = _alternatives(programs)
    pattern = re.compile(rf"{STAMP_TEXT}(?:(?:{names})\[(?P<pid>\d{{1,10}})\]: (?:{SSHD_SHAPES})(?P<pre> \[preauth\])?"
                         rf"|{quiet})")
    if [pattern.groupindex[f] for f in FIELDS] != list(range(1, pattern.groups + 1)):
        raise AssertionError("the sshd fast-path pattern's groups are not FIELDS in order")
    return pattern


def quiet_pattern(parser: StreamParser) -> str:
    """What follows the header of a syslog line the general path reads as no attempt, whatever came before
    it (so it changes nothing but ``last``), told from the text alone: a program no parser reads (not a
    repeat wrapper, not PAM), or a PAM line that cannot be one whose service counts (``pam.py``).

    Derived from ``data/logons/services.toml``, as the dispatcher decides: exact program names, prefixes,
    and the PAM services that count (a ``PAM N more`` line counts by its program)."""
    counting = _alternatives(set(parser.pam.services) - parser.pam.own_lines)
    prefixes = _alternatives(prefix for prefix, _ in parser.prefixes)
    known = _alternatives(parser.programs)
    return (rf"(?!(?:{known})[\[:])(?!{prefixes}){PROGRAM}(?!pam_|PAM |message repeated ).*"
            rf"|{PROGRAM}pam_(?!\w+\((?:{counting}):auth\): ).*"
            rf"|(?!(?:{counting})[\[:]){PROGRAM}PAM .*")


def _alternatives(names: Iterable[str]) -> str:
    """A regular expression alternation of exact texts, the longest first; one that never matches for none."""
    ordered = sorted(set(names), key=lambda name: (-len(name), name))
    return "|".join(re.escape(name) for name in ordered) if ordered else "(?!)"


class HotPath:
    """Reads the sshd shapes of one stream into ``sshd`` (the stream's parser, whose sessions they share)."""

    def __init__(self, parser: StreamParser) -> None:
        self.sshd = parser.sshd
        pattern = sshd_pattern(parser.programs_of("sshd"), quiet_pattern(parser))
        self.match = pattern.fullmatch

    def attempt(self, m: re.Match[str]) -> Attempt | None:
        """The attempt of a line :attr:`match` accepted (its time is the caller's: ``RecordReader.time_of_stamp``
        of group 1); None for a quiet line."""
        _, pid, verdict, method, user, addr, port, iuser, iaddr, iport, kind, cuser, caddr, cport, raddr, rport, \
            uaddr, uport, pre = m.groups()
        if verdict is not None:
            return self.sshd.auth(verdict, method, user, addr, port, int(pid))
        if iuser is not None:
            self.sshd.invalid(iuser, iaddr, iport, int(pid))
            return None
        if kind is not None:
            return self.sshd.closed(kind, cuser, caddr, cport, int(pid), pre is not None)
        if raddr is not None:
            return self.sshd.received(raddr, rport, int(pid), pre is not None)
        if uaddr is not None:
            return self.sshd.probe(uaddr, uport, int(pid))
        return None  # a quiet line
