"""What every probe shares: only loopback or a unix socket, refused before any connection; the rate limit on a
real clock; the guess order from the data file; the protocol readers on garbage from a socket pair."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.data import load_toml
from hostguard.probes.base import Answer, Endpoint, Error, ProbeError, ProtocolError, Reader, attempt
from hostguard.probes.mysql import MysqlProber, parse_handshake, read_packet, scramble, verdict
from hostguard.probes.postgres import PostgresProber, ScramClient, exchange
from hostguard.probes.redis import RedisProber, classify, read_reply
from hostguard.probes.session import RateLimit, service_guesses


@pytest.mark.parametrize(("host", "message"), [
    ("192.0.2.10", "probe refused: 192.0.2.10 is not a loopback address"),
    ("2001:db8::5", "probe refused: 2001:db8::5 is not a loopback address"),
    ("0.0.0.0", "probe refused: 0.0.0.0 is not a loopback address"),
    ("::ffff:127.0.0.1", "probe refused: ::ffff:127.0.0.1 is not a loopback address"),
    ("localhost", "probe refused: 'localhost' is not an IP address"),
    ("db.test", "probe refused: 'db.test' is not an IP address"),
])
def test_non_loopback_addresses_are_refused(host: str, message: str) -> None:
    with pytest.raises(ProbeError) as raised:
        Endpoint.tcp(host, 6379)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_a_hand_built_endpoint_is_refused_by_the_prober_too(tmp_path: Path) -> None:
    """Bypassing the constructor does not help: the prober checks again before it opens a socket (an attempt
    that had connected would have given an Answer, not this error)."""
    for prober in (RedisProber(Endpoint(host="192.0.2.10", port=6379)),
                   MysqlProber(Endpoint(host="198.51.100.7", port=3306)),
                   PostgresProber(Endpoint(host="2001:db8::7", port=5432)),
                   RedisProber(Endpoint(host="127.0.0.1", port=6379, path=str(tmp_path / "x.sock")))):
        with pytest.raises(ProbeError):
            prober.try_password("default", "x")


@pytest.mark.parametrize(("host", "label"), [("127.0.0.1", "tcp 127.0.0.1:6379"), ("127.1.2.3", "tcp 127.1.2.3:6379"),
                                             ("::1", "tcp [::1]:6379")])
def test_loopback_addresses_are_taken(host: str, label: str) -> None:
    assert Endpoint.tcp(host, 6379).label() == label


def test_the_rate_limit_spaces_attempts_on_a_real_clock() -> None:
    rate = RateLimit(20.0)
    start = time.monotonic()
    for _ in range(6):
        rate.wait()
    assert time.monotonic() - start >= 5 / 20 - 0.01        # five gaps of 50 ms at least
    quick = RateLimit(1000.0)
    start = time.monotonic()
    for _ in range(6):
        quick.wait()
    assert time.monotonic() - start < 0.2


def test_guess_order_defaults_first_and_no_duplicates() -> None:
    redis = [g.text for g in service_guesses("redis", "default")]
    assert redis[:2] == ["", "foobared"]
    assert len(redis) == len(set(redis))
    mysql_root = service_guesses("mysql", "root")
    assert [(g.text, g.source) for g in mysql_root[:3]] == [
        ("", "a default credential of mysql"), ("root", "a default credential of mysql"),
        ("password", "a default credential of mysql")]
    assert service_guesses("ftp", "anonymous") == []
    entries = load_toml("weak_passwords/service_defaults.toml")["credentials"]
    assert all(e["why"] and set(e) == {"service", "user", "password", "why"} for e in entries)


# --- the protocol readers on garbage: the only fake is a socket pair sending random bytes -------------------

def _feed(data: bytes, read: object) -> Answer:
    """Run one reader over ``data`` sent by the other end of a socket pair (then closed), as a prober would."""
    ours, theirs = socket.socketpair()
    ours.settimeout(2)

    def serve() -> None:
        try:
            theirs.sendall(data)
        except OSError:
            pass
        finally:
            theirs.close()

    sender = threading.Thread(target=serve)
    sender.start()
    try:
        return attempt(lambda: read(Reader(ours, limit=1 << 16), ours.sendall))  # type: ignore[operator]
    finally:
        ours.close()
        sender.join()


GARBAGE = st.binary(max_size=300) | st.builds(lambda head, tail: head + tail, st.sampled_from(
    [b"R\x00\x00\x00\x08\x00\x00\x00\x05", b"R\x00\x00\x00\x17\x00\x00\x00\x0aSCRAM-SHA-256\x00\x00",
     b"E\x00\x00\x00\x10SFATAL\x00C28P01\x00\x00", b"+OK\r\n", b"-WRONGPASS x\r\n", b"$5\r\n", b"*2\r\n",
     b"\x4a\x00\x00\x00\x0a10.11.6-MariaDB\x00", b"\x07\x00\x00\x02\xfe", b"\x0a\x00\x00\x02\xff\x15\x04#28000"]),
    st.binary(max_size=200))


@settings(max_examples=150, deadline=None)
@given(GARBAGE)
def test_postgres_exchange_never_raises(data: bytes) -> None:
    answer = _feed(data, lambda reader, send: exchange(reader, send, "app", "x"))
    assert answer.__class__.__name__ in {"Accepted", "Refused", "Error"}


@settings(max_examples=150, deadline=None)
@given(GARBAGE)
def test_redis_reply_never_raises(data: bytes) -> None:
    answer = _feed(data, lambda reader, send: classify(*read_reply(reader)))
    assert answer.__class__.__name__ in {"Accepted", "Refused", "Error"}


@settings(max_examples=150, deadline=None)
@given(GARBAGE)
def test_mysql_handshake_and_verdict_never_raise(data: bytes) -> None:
    def both(reader: Reader, send: object) -> Answer:
        _, payload = read_packet(reader)
        parse_handshake(payload)
        return verdict(reader, send, 1, "x")  # type: ignore[arg-type]
    answer = _feed(data, both)
    assert answer.__class__.__name__ in {"Accepted", "Refused", "Locked", "Error"}
    verdict_only = _feed(data, lambda reader, send: verdict(reader, send, 1, "x"))
    assert verdict_only.__class__.__name__ in {"Accepted", "Refused", "Locked", "Error"}


def test_a_silent_server_is_a_timeout_error(tmp_path: Path) -> None:
    """A server that accepts and never answers: the per-attempt timeout ends the attempt."""
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(tmp_path / "silent.sock"))
        listener.listen()
        start = time.monotonic()
        answer = RedisProber(Endpoint.unix(str(tmp_path / "silent.sock")), timeout=0.3).try_password("default", "x")
    assert answer == Error("timed out") and time.monotonic() - start < 2


def test_a_dripping_server_cannot_stretch_the_attempt(tmp_path: Path) -> None:
    """One byte every 50 ms (each read would meet its own timeout): the attempt's deadline still ends it."""
    path = str(tmp_path / "drip.sock")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen()

        def drip() -> None:
            conn, _ = listener.accept()
            with conn:
                for _ in range(40):
                    try:
                        conn.sendall(b"+")
                    except OSError:
                        return
                    time.sleep(0.05)

        server = threading.Thread(target=drip)
        server.start()
        start = time.monotonic()
        answer = RedisProber(Endpoint.unix(path), timeout=0.3).try_password("default", "x")
        elapsed = time.monotonic() - start
        server.join()
    assert answer == Error("timed out") and elapsed < 1.0


def test_known_answers() -> None:
    """The SCRAM-SHA-256 example exchange of RFC 7677 section 3, and the MySQL 4.1 scramble's shape."""
    assert scramble("", b"12345678901234567890") == b""
    assert len(scramble("x", b"12345678901234567890")) == 20
    client = ScramClient("pencil", nonce="rOprNGfwEbeRWgbNEkqO", user="user")
    assert client.first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    assert client.final(server_first) == (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                                          b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    assert client.verify(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    assert not client.verify(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    with pytest.raises(ProtocolError, match="nonce"):
        ScramClient("pencil").final(server_first)
