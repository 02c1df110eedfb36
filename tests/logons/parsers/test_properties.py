"""Property tests on every parser: arbitrary text never raises and never gives an invalid attempt, and
generated messages (any user name, any address form, any port) parse back to exactly what was written."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.logons.events import OUTCOMES, Attempt
from hostguard.logons.parse import parse_lines
from hostguard.logons.parsers import StreamParser
from hostguard.logons.parsers.databases import PostgresParser, parse_mysql
from hostguard.logons.parsers.ftp import parse_proftpd, parse_pure_ftpd, parse_vsftpd
from hostguard.logons.parsers.local import parse_login, parse_su, parse_sudo
from hostguard.logons.parsers.mail import parse_dovecot, parse_postfix
from hostguard.logons.parsers.pam import PamParser
from hostguard.logons.parsers.sshd import SshdParser
from hostguard.logons.records import Record
from hostguard.logons.sources import SourceStats
from hostguard.logons.timestamps import Clock

WORDS = st.sampled_from(["Failed", "Accepted", "password", "for", "invalid user", "from", "port", "ssh2", "[preauth]",
                         "Connection closed by", "authenticating user", "FAIL LOGIN", "Client", "USER", "(Login failed):",
                         "SASL", "authentication failed:", "Access denied for user", "FATAL:  ", "FAILED SU", "(to",
                         "imap-login:", "Disconnected", "(auth failed, 3 attempts in 2 secs)", "user=<", ">,", "rip=",
                         "pam_unix(vsftpd:auth): authentication failure;", "rhost=", "PAM 2 more", "::ffff:", "[", "]",
                         "192.0.2.1", "2001:db8::1", "'", '"', "@", ":", " ", "\x00", "\udcff", "message repeated"])
MESSY = st.lists(WORDS | st.text(max_size=12), max_size=30).map(" ".join) | st.text(max_size=300)
# user names as attackers send them: anything printable but the newline that ends a log line
USERS = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(
    lambda u: u.strip() == u and "\n" not in u)
V4 = st.ip_addresses(v=4).map(str)
V6 = st.ip_addresses(v=6).map(lambda a: str(a))
ADDRS = V4 | V6
PORTS = st.integers(min_value=1, max_value=65535)


def valid(attempt: Attempt | None) -> None:
    if attempt is None:
        return
    assert attempt.outcome in OUTCOMES and attempt.count >= 1 and attempt.service
    assert attempt.port is None or 0 < attempt.port < 65536
    if attempt.ip is not None:
        ipaddress.ip_address(attempt.ip)


def canonical(addr: str) -> str:
    a = ipaddress.ip_address(addr)
    mapped = getattr(a, "ipv4_mapped", None)
    return str(mapped or a)


STATELESS: tuple[Callable[[str], Attempt | None], ...] = (
    parse_vsftpd, parse_proftpd, parse_pure_ftpd, parse_dovecot, parse_postfix, parse_mysql, parse_su, parse_sudo,
    parse_login)


@settings(max_examples=500)
@given(MESSY, st.integers(min_value=0, max_value=5))
def test_no_parser_raises_or_invents(message: str, pid: int) -> None:
    for parse in STATELESS:
        valid(parse(message))
    valid(SshdParser().parse(message, pid))
    valid(PostgresParser().parse(message, pid))
    valid(PamParser({"vsftpd": "vsftpd"}, frozenset({"sshd"})).parse(message, "vsftpd"))
    stream = StreamParser()
    for program in ("sshd", "postfix/smtpd", "dovecot", "sudo", "", "x"):
        found = stream.parse(Record(None, program, pid, message))
        if found is not None:
            valid(found[0])
            assert found[1] >= 1


@settings(max_examples=300)
@given(USERS, ADDRS, PORTS, st.sampled_from(["password", "publickey", "keyboard-interactive/pam"]), st.booleans(),
       st.booleans())
def test_sshd_failed_and_accepted_round_trip(user: str, addr: str, port: int, method: str, invalid: bool, ok: bool) -> None:
    who = f"invalid user {user}" if invalid and not ok else user
    verdict = "Accepted" if ok else "Failed"
    got = SshdParser().parse(f"{verdict} {method} for {who} from {addr} port {port} ssh2", 7)
    assert got == Attempt("sshd", "success" if ok else "failure", user, canonical(addr), port, method)


@settings(max_examples=300)
@given(USERS, ADDRS, PORTS, st.sampled_from(["Connection closed by", "Disconnected from", "Connection reset by"]),
       st.sampled_from(["invalid user", "authenticating user"]))
def test_sshd_close_of_an_authenticating_user_round_trips(user: str, addr: str, port: int, lead: str, kind: str) -> None:
    got = SshdParser().parse(f"{lead} {kind} {user} {addr} port {port} [preauth]", 9)
    assert got == Attempt("sshd", "failure", user, canonical(addr), port, None)


@settings(max_examples=200)
@given(USERS, ADDRS)
def test_vsftpd_round_trips(user: str, addr: str) -> None:
    shown = f"::ffff:{addr}" if ":" not in addr else addr
    got = parse_vsftpd(f'[{user}] FAIL LOGIN: Client "{shown}"')
    assert got == Attempt("vsftpd", "failure", user, canonical(addr), None, "password")


@settings(max_examples=200)
@given(USERS.filter(lambda u: "]" not in u), ADDRS)
def test_pure_ftpd_round_trips(user: str, addr: str) -> None:
    got = parse_pure_ftpd(f"(?@{addr}) [WARNING] Authentication failed for user [{user}]")
    assert got == Attempt("pure-ftpd", "failure", user, canonical(addr), None, "password")


@settings(max_examples=200)
@given(USERS, ADDRS)
def test_proftpd_round_trips(user: str, addr: str) -> None:
    got = parse_proftpd(f"ftp.test ({addr}[{addr}]) - USER {user} (Login failed): Incorrect password")
    assert got == Attempt("proftpd", "failure", user, canonical(addr), None, "password")


@settings(max_examples=200)
@given(USERS.filter(lambda u: ">" not in u), ADDRS, st.integers(min_value=1, max_value=99))
def test_dovecot_round_trips(user: str, addr: str, n: int) -> None:
    got = parse_dovecot(f"imap-login: Disconnected (auth failed, {n} attempts in 9 secs): user=<{user}>, method=PLAIN, "
                        f"rip={addr}, lip=192.0.2.1, TLS, session=<x>")
    assert got == Attempt("dovecot", "failure", user, canonical(addr), None, "plain", n)


@settings(max_examples=200)
@given(USERS, ADDRS)
def test_postfix_round_trips(user: str, addr: str) -> None:
    got = parse_postfix(f"warning: unknown[{addr}]: SASL LOGIN authentication failed: authentication failure, "
                        f"sasl_username={user}")
    assert got == Attempt("postfix", "failure", user, canonical(addr), None, "login")


@settings(max_examples=200)
@given(USERS, ADDRS, st.booleans())
def test_mysql_round_trips(user: str, addr: str, password: bool) -> None:
    got = parse_mysql(f"[Warning] Access denied for user '{user}'@'{addr}' (using password: {'YES' if password else 'NO'})")
    assert got == Attempt("mysql", "failure", user, canonical(addr), None, "password" if password else "none")


@settings(max_examples=200)
@given(USERS, ADDRS, PORTS)
def test_postgres_round_trips(user: str, addr: str, port: int) -> None:
    parser = PostgresParser()
    assert parser.parse(f"LOG:  connection received: host={addr} port={port}", 42) is None
    got = parser.parse(f'{user}@db FATAL:  password authentication failed for user "{user}"', 42)
    assert got == Attempt("postgresql", "failure", user, canonical(addr), port, "password")


@settings(max_examples=200)
@given(USERS.filter(lambda u: not any(c.isspace() for c in u)), st.integers(min_value=1, max_value=9))
def test_local_round_trips(user: str, n: int) -> None:
    assert parse_su(f"FAILED SU (to {user}) alice on pts/0") == Attempt("su", "failure", user, None, None, "password")
    got = parse_sudo(f"   {user} : {n} incorrect password attempts ; TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/id")
    assert got == Attempt("sudo", "failure", user, None, None, "password", n)
    got = parse_login(f"FAILED LOGIN (1) on '/dev/tty1' FOR '{user}', Authentication failure")
    assert got == Attempt("login", "failure", None if user == "UNKNOWN" else user, None, None, "password")


@settings(max_examples=200)
@given(USERS, ADDRS, st.integers(min_value=1, max_value=9))
def test_pam_round_trips(user: str, addr: str, n: int) -> None:
    parser = PamParser({"vsftpd": "vsftpd"}, frozenset({"sshd"}))
    kv = f"logname= uid=0 euid=0 tty=ftp ruser={user} rhost={addr}  user={user}"
    assert parser.parse(f"pam_unix(vsftpd:auth): authentication failure; {kv}", "vsftpd") == Attempt(
        "vsftpd", "failure", user, canonical(addr), None, "password")
    assert parser.parse(f"PAM {n} more authentication failures; {kv}", "vsftpd") == Attempt(
        "vsftpd", "failure", user, canonical(addr), None, "password", n)
    assert parser.parse(f"pam_unix(sshd:auth): authentication failure; {kv}", "sshd") is None


HEADERS = st.sampled_from(["", "Mar  4 10:00:00 gw.test sshd[1]: ", "2024-03-04T10:00:00+01:00 gw.test sshd-session[2]: ",
                           "Mar 04 10:00:00.5 gw.test dovecot: ", "Mon Mar  4 10:00:00 2024 [pid 3] ",
                           "2024-03-04 10:00:00.100 UTC [4] ", "\t\t  5 Connect\t", "{", "-- Boot x --"])
JOURNAL = st.fixed_dictionaries({}, optional={
    "MESSAGE": st.one_of(st.text(max_size=80), st.lists(st.integers(-5, 300), max_size=40), st.none(), st.integers()),
    "__REALTIME_TIMESTAMP": st.one_of(st.text(alphabet="0123456789", max_size=30), st.integers()),
    "SYSLOG_IDENTIFIER": st.sampled_from(["sshd", "su", "postfix/smtpd", ""]) | st.integers(),
    "_PID": st.text(alphabet="0123456789", max_size=14)}).map(json.dumps)


@settings(max_examples=400)
@given(st.lists(st.one_of(st.tuples(HEADERS, MESSY).map(lambda t: (t[0] + t[1]).encode("utf-8", "surrogateescape")),
                          st.binary(max_size=120), JOURNAL.map(str.encode)).map(lambda b: b.replace(b"\n", b"")),
                max_size=12))
def test_whole_pipeline_never_raises(lines: list[bytes]) -> None:
    stats = SourceStats("x")
    clock = Clock(UTC, datetime(2024, 3, 5, tzinfo=UTC))
    numbered = list(enumerate(lines, start=1))
    for event in parse_lines(numbered, "x", clock, stats, "sshd"):
        json.dumps(event.to_json(), ensure_ascii=False).encode("utf-8")  # always writable: no lone surrogates
        assert 1 <= event.line <= len(lines) and event.count >= 1
    assert stats.events <= len(lines)
