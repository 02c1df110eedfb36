"""The fast path (hostguard.logons.hot) against the general path: the same events and the same parser state,
line by line, on generated sshd lines around every shape it takes — and near misses it must leave alone."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.logons.parse import StreamReader
from hostguard.logons.sources import SourceStats
from hostguard.logons.timestamps import Clock

CLOCK = Clock(UTC, datetime(2024, 3, 5, tzinfo=UTC))
STAMPS = st.sampled_from(["Mar  4 10:00:01", "Mar 14 10:00:01.250", "2024-03-04T10:00:01.123456+01:00",
                          "2024-03-04T10:00:01.000000-00:00", "2024-03-04T10:00:01Z", "1709546401.5"])
PROGRAMS = st.sampled_from(["sshd[7]", "sshd-session[8]", "sshd-auth[9]", "sshd", "sshd2[1]", "sshd[99999999999]"])
USERS = st.sampled_from(["root", "", "invalid", "invalid user", "from", "port", "a b", "x from 192.0.2.1 port 1",
                         "ü", "a\"b", "[preauth]", "user", "authenticating user x", "ssh2"]) | st.text(
    alphabet="ab .:[]@-_0123456789\"\\", max_size=12)
ADDRS = st.sampled_from(["192.0.2.7", "2001:db8::7", "::ffff:192.0.2.8", "::1", "1::2:", "2001:11:", "22", "1:2",
                         "gw.test", "[2001:db8::9]", "192.0.2.999", "01.2.3.4", "2001:db8::", "fe80::1%eth0"])
PORTS = st.sampled_from(["22", "65535", "0", "99999", "123456", ""])
TAILS = st.sampled_from(["", " [preauth]", " [net]", " ssh2", ": RSA SHA256:abc", " from 192.0.2.3 port 9"])
SHAPES = st.sampled_from([
    "Failed {method} for {user} from {addr}{port} ssh2{tail}",
    "Failed {method} for invalid user {user} from {addr}{port} ssh2{tail}",
    "Accepted {method} for {user} from {addr}{port} ssh2: ED25519 SHA256:k{tail}",
    "Accepted {method} for {user} from {addr}{port} ssh2: from 192.0.2.5",
    "Invalid user {user} from {addr}{port}{tail}",
    "Connection closed by authenticating user {user} {addr}{port}{tail}",
    "Connection closed by invalid user {user} {addr}{port}{tail}",
    "Disconnected from user {user} {addr}{port}{tail}",
    "Connection reset by {addr}{port}{tail}",
    "Received disconnect from {addr}{port}:11: Bye{tail}",
    "Received disconnect from {addr}{port}: 11: {user}{tail}",
    "Unable to negotiate with {addr}{port}: no matching key exchange method found.{tail}",
    "Unable to negotiate with {addr}{port}: {user} [preauth]{tail}",
    "error: Failed {method} for {user} from {addr}{port} ssh2",
    "Connection from {addr}{port} on 192.0.2.1 port 22",
])
METHODS = st.sampled_from(["password", "publickey", "keyboard-interactive/pam", "none", "hostbased", "pass\"w"])


@st.composite
def sshd_lines(draw: st.DrawFn) -> str:
    port = draw(PORTS)
    message = draw(SHAPES).format(method=draw(METHODS), user=draw(USERS), addr=draw(ADDRS),
                                  port=f" port {port}" if port else "", tail=draw(TAILS))
    return f"{draw(STAMPS)} gw.test {draw(PROGRAMS)}: {message}"


ANY_PROGRAMS = st.sampled_from(["vsftpd[3]", "vsftpd", "vsftpd2[3]", "sudo[4]", "su", "cron[5]", "postfix/smtpd[6]",
                                "postfix-out/smtpd[6]", "postfix[6]", "sshd[7]", "dovecot", "x[abc]", "x[1][2]",
                                "login[8]", "proftpd[9]", "a" * 129]) | st.text(alphabet="ab-/[]:1", min_size=1,
                                                                                 max_size=8)
OTHERS = st.sampled_from([
    "{stamp} gw.test last message repeated 2 times",
    "{stamp} gw.test last message repeated 2 times, and more",
    "{stamp} gw.test sshd[7]: message repeated 3 times: [ Failed password for {user} from {addr} port 22 ssh2]",
    "{stamp} gw.test su[5]: FAILED SU (to root) {user} on pts/0",
    "{stamp} gw.test sshd[7]: pam_unix(sshd:auth): authentication failure; logname= rhost={addr}  user={user}",
    "{stamp} gw.test vsftpd[3]: pam_unix(vsftpd:auth): authentication failure; logname= rhost={addr}  user={user}",
    "{stamp} gw.test sshd: Failed password for {user} from {addr} port 22 ssh2",
    "{stamp} gw.test sshd[7]:Failed password for {user} from {addr} port 22 ssh2",
    "{stamp} gw.test",
    # quiet lines (hot.quiet_pattern) and their near misses: programs no parser reads, PAM lines by service
    "{stamp} gw.test CRON[5]: pam_unix(cron:session): session opened for user {user}(uid=0) by (uid=0)",
    "{stamp} gw.test systemd-logind[5]: New session 4 of user {user}.",
    "{stamp} gw.test kernel: [UFW BLOCK] IN=eth0 SRC={addr}",
    "{stamp} gw.test sshd[7]: pam_unix(sshd:session): session closed for user {user}",
    "{stamp} gw.test {program}: pam_unix(vsftpd:auth): authentication failure; logname= rhost={addr}  user={user}",
    "{stamp} gw.test {program}:  pam_unix(vsftpd:auth): authentication failure; logname= rhost={addr}  user={user}",
    "{stamp} gw.test {program}:pam_unix(vsftpd:auth): authentication failure; logname= rhost={addr}  user={user}",
    "{stamp} gw.test {program}: pam_unix(vsftpd:auth): 2 more authentication failures; rhost={addr}  user={user}",
    "{stamp} gw.test {program}: pam_unix(vsftpd:session): session opened for user {user}",
    "{stamp} gw.test {program}: pam_sss(vsftpd:auth): authentication failure; logname= rhost={addr} user={user}",
    "{stamp} gw.test {program}: PAM 2 more authentication failures; logname= rhost={addr}  user={user}",
    "{stamp} gw.test {program}: PAM 0 more authentication failures; logname= rhost={addr}  user={user}",
    "{stamp} gw.test {program}: message repeated 2 times: [ pam_unix(vsftpd:auth): authentication failure; "
    "logname= rhost={addr}  user={user}]",
    "{stamp} gw.test {program}: {user} : 3 incorrect password attempts ; TTY=pts/1 ; USER=root ; COMMAND=/bin/id",
    "{stamp} gw.test {program}: FAILED SU (to root) {user} on pts/0",
    "{stamp} gw.test {program}: Failed password for {user} from {addr} port 22 ssh2",
    "{stamp} gw.test {program}: warning: unknown[{addr}]: SASL LOGIN authentication failed: x, sasl_username={user}",
    "Mon Mar  4 10:00:01 2024 [pid 3] [{user}] FAIL LOGIN: Client \"{addr}\"",
])


@st.composite
def other_lines(draw: st.DrawFn) -> str:
    """Lines the shapes do not take, which the fast path's pattern must still read as the general path does."""
    return draw(OTHERS).format(stamp=draw(STAMPS), user=draw(USERS), addr=draw(ADDRS), program=draw(ANY_PROGRAMS))


def read(lines: list[str], fast: bool) -> tuple[list[object], bytes, SourceStats]:
    stats = SourceStats("x")
    reader = StreamReader(CLOCK, fast=fast)
    block = "\n".join(lines).encode("utf-8", "surrogateescape")
    found = [event.to_json() for event in reader.events([(1, block)], "x", stats)]
    return found, reader.digest(), stats


@settings(max_examples=2500)
@given(st.lists(sshd_lines() | other_lines(), min_size=1, max_size=8))
def test_fast_path_gives_what_the_general_path_gives(lines: list[str]) -> None:
    # the same events, line for line, and the same state after them (the next line would read the same)
    fast, general = read(lines, True), read(lines, False)
    assert fast[0] == general[0]
    assert fast[1] == general[1]
    assert fast[2] == general[2]


def test_fast_path_takes_the_common_shapes_and_leaves_the_rest() -> None:
    reader = StreamReader(CLOCK)
    assert reader.hot is not None
    taken = [
        "Mar  4 10:00:01 gw.test sshd[7]: Failed password for root from 192.0.2.7 port 22 ssh2",
        "Mar  4 10:00:01 gw.test sshd-session[7]: Accepted publickey for git from 2001:db8::7 port 22 ssh2: "
        "ED25519 SHA256:abc+/=",
        "2024-03-04T10:00:01.123456+01:00 gw.test sshd[7]: Invalid user oracle from 192.0.2.7 port 22",
        "Mar  4 10:00:01 gw.test sshd-auth[7]: Connection closed by invalid user x 192.0.2.7 port 22 [preauth]",
        "Mar  4 10:00:01 gw.test sshd[7]: Received disconnect from 2001:db8::7 port 22:11: Bye Bye [preauth]",
        "Mar  4 10:00:01 gw.test sshd[7]: Unable to negotiate with 192.0.2.7 port 22: no matching host key type found."
        " Their offer: ssh-rsa,ssh-dss [preauth]",
    ]
    left = [
        "Mar  4 10:00:01 gw.test sshd[7]: Failed password for a b from 192.0.2.7 port 22 ssh2",  # space in the name
        "Mar  4 10:00:01 gw.test sshd[7]: Failed password for root from gw.test port 22 ssh2",  # a host name
        "Mar  4 10:00:01 gw.test sshd[7]: error: Failed password for root from 192.0.2.7 port 22 ssh2",
        "Mar  4 10:00:01 gw.test sshd[7]: Failed password for root from 192.0.2.7 port 22 ssh2 [net]",
        "Mar  4 10:00:01 gw.test sshd: Failed password for root from 192.0.2.7 port 22 ssh2",  # no pid
        "Mar  4 10:00:01 gw.test sshd[7]: Unable to negotiate with 2001:db8:: port 22: no match [preauth]",  # ends in :
    ]
    quiet = [
        "Mar  4 10:00:01 gw.test sshd2[7]: Failed password for root from 192.0.2.7 port 22 ssh2",  # no parser's
        "Mar  4 10:00:01 gw.test CRON[7]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
        "Mar  4 10:00:01 gw.test sshd[7]: pam_unix(sshd:auth): authentication failure; logname= rhost=192.0.2.7",
        "Mar  4 10:00:01 gw.test sshd[7]: PAM 2 more authentication failures; logname= rhost=192.0.2.7  user=root",
        "Mar  4 10:00:01 gw.test vsftpd[7]: pam_unix(vsftpd:session): session opened for user ftp",
    ]
    general = [  # what the quiet lines must leave to the general path
        "Mar  4 10:00:01 gw.test CRON[7]: pam_unix(vsftpd:auth): authentication failure; logname= rhost=192.0.2.7",
        "Mar  4 10:00:01 gw.test vsftpd[7]: PAM 2 more authentication failures; logname= rhost=192.0.2.7  user=a",
        "Mar  4 10:00:01 gw.test CRON[7]: message repeated 2 times: [ x]",
        "Mar  4 10:00:01 gw.test postfix/smtpd[7]: connect from unknown[192.0.2.7]",
        "Mar  4 10:00:01 gw.test su: FAILED SU (to root) alice on pts/0",
        "Mar  4 10:00:01 gw.test x[abc]: y",
    ]

    def kind(line: str) -> str:
        assert reader.hot is not None
        m = reader.hot.match(line)
        return "general" if m is None else "quiet" if m["pid"] is None else "shape"

    assert [kind(line) for line in taken + left + quiet + general] == (
        ["shape"] * len(taken) + ["general"] * len(left) + ["quiet"] * len(quiet)
        + ["general"] * len(general))
