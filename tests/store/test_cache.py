"""cache/passwords.db: positions kept per host, account, hash and list; digests only; 0600; a corrupt file rebuilt.

The whole path (a scan resuming, a found password, the bytes of the file after real scans) is tested in
tests/checks/test_weak_passwords.py; here the store alone.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

from hostguard.store.cache import DB_NAME, GuessProgress, hash_digest, list_digest

HOST = "0123456789abcdef0123456789abcdef:6f1c7a52-4c2e-4f7e-9a59-0d7f0a1b2c3d"
HASH = "$6$hostguardtest$" + "A" * 86
OTHER_HASH = "$6$hostguardtest$" + "B" * 86
WORDS = ["correcthorse", "Tr0ub4dor&3", "letmein-please"]
LIST = list_digest(WORDS)
CAFE = b"caf\xe9".decode("utf-8", "surrogateescape")  # an account name that is not UTF-8


def _saved(directory: Path, account: str = "alice", tried: int = 120) -> None:
    progress = GuessProgress.open(directory, HOST)
    progress.remember(account, HASH, LIST, tried)
    progress.save()


def test_position_is_kept_for_the_same_hash_list_and_host(tmp_path: Path) -> None:
    _saved(tmp_path)
    _saved(tmp_path, CAFE, 7)
    again = GuessProgress.open(tmp_path, HOST)
    assert again.note == ""
    assert again.tried("alice", HASH, LIST) == 120
    assert again.tried(CAFE, HASH, LIST) == 7
    # near misses: each differs in one part of the key, and starts over
    assert again.tried("bob", HASH, LIST) == 0
    assert again.tried("alice", OTHER_HASH, LIST) == 0
    assert again.tried("alice", HASH, list_digest([*WORDS, "one-more"])) == 0
    assert again.tried("alice", HASH, list_digest(list(reversed(WORDS)))) == 0  # same words, other order
    assert GuessProgress.open(tmp_path, HOST.replace("6f1c", "7f1c")).tried("alice", HASH, LIST) == 0


def test_a_new_hash_replaces_the_old_row(tmp_path: Path) -> None:
    _saved(tmp_path)
    progress = GuessProgress.open(tmp_path, HOST)
    progress.remember("alice", OTHER_HASH, LIST, 30)
    progress.save()
    again = GuessProgress.open(tmp_path, HOST)
    assert (again.tried("alice", OTHER_HASH, LIST), again.tried("alice", HASH, LIST)) == (30, 0)
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("SELECT account, hash_sha256, tried FROM progress").fetchall() == [
            (b"alice", hash_digest(OTHER_HASH), 30)]


def test_list_digest_does_not_depend_on_where_words_are_cut() -> None:
    assert list_digest(["ab", "c"]) != list_digest(["a", "bc"])
    assert list_digest(["ab", "c"]) == list_digest(iter(["ab", "c"]))


def test_file_holds_no_hash_and_no_guess(tmp_path: Path) -> None:
    _saved(tmp_path)
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert hash_digest(HASH).encode() in data  # the digest is what is kept...
    for secret in (HASH, HASH[3:20], "A" * 40, *WORDS):  # ...never the hash, its salt or a guess
        assert secret.encode() not in data


def test_file_mode_is_0600_even_under_a_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        progress = GuessProgress.open(tmp_path, HOST)
        progress.remember("alice", HASH, LIST, 1)
        progress.save()
    finally:
        os.umask(old)
    files = [p for p in tmp_path.iterdir() if p.name.startswith(DB_NAME)]
    assert tmp_path / DB_NAME in files
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == dict.fromkeys((p.name for p in files), 0o600)


def test_a_loose_mode_left_by_someone_else_is_tightened(tmp_path: Path) -> None:
    _saved(tmp_path)
    (tmp_path / DB_NAME).chmod(0o644)
    GuessProgress.open(tmp_path, HOST)
    assert stat.S_IMODE((tmp_path / DB_NAME).stat().st_mode) == 0o600


def test_corrupt_file_is_rebuilt_with_a_note(tmp_path: Path) -> None:
    _saved(tmp_path)
    (tmp_path / DB_NAME).write_bytes(b"this is not a database\n" * 300)
    progress = GuessProgress.open(tmp_path, HOST)
    assert "was unreadable" in progress.note and "rebuilt" in progress.note and "starts over" in progress.note
    assert progress.tried("alice", HASH, LIST) == 0
    progress.remember("alice", HASH, LIST, 5)
    progress.save()
    again = GuessProgress.open(tmp_path, HOST)
    assert (again.note, again.tried("alice", HASH, LIST)) == ("", 5)


def test_a_row_of_the_wrong_type_is_corruption_too(tmp_path: Path) -> None:
    _saved(tmp_path)
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("PRAGMA ignore_check_constraints=ON")
        db.execute("UPDATE progress SET tried='many'")
    progress = GuessProgress.open(tmp_path, HOST)
    assert "rebuilt" in progress.note and progress.tried("alice", HASH, LIST) == 0


def test_a_symlink_is_never_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / DB_NAME).symlink_to(victim)
    progress = GuessProgress.open(cache, HOST)
    assert "rebuilt" in progress.note
    progress.remember("alice", HASH, LIST, 3)
    progress.save()
    assert victim.read_bytes() == b"precious\n" and not (cache / DB_NAME).is_symlink()
    assert GuessProgress.open(cache, HOST).tried("alice", HASH, LIST) == 3


def test_an_unusable_directory_keeps_nothing_and_says_so(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "cache"
    not_a_dir.write_text("a file where the cache directory should be\n")
    progress = GuessProgress.open(not_a_dir, HOST)
    assert "cannot be kept" in progress.note
    progress.remember("alice", HASH, LIST, 3)
    progress.save()  # nothing to write to: a no-op, never a traceback
    assert not_a_dir.read_text() == "a file where the cache directory should be\n"
