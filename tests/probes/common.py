"""Shared pieces of the probe tests: the rank of a password in the list a session tries, and the proof that no
password leaked into a result or into state.db."""

from __future__ import annotations

from pathlib import Path

from hostguard.passwords.guesses import Guess
from hostguard.probes.session import ProbeResult
from hostguard.store.state import StateStore

HOST_KEY = "0123456789abcdef0123456789abcdef:6f1c7a52-4c2e-4f7e-9a59-0d7f0a1b2c3d"
STRONG = "Qx7-vT2p!eL9#wRk4zN8uYb3"      # not in any list, 24 characters, 4 classes


def rank_of(guesses: list[Guess], password: str) -> int:
    """The 1-based place of ``password`` in ``guesses`` (what a hit must report as its rank)."""
    return [g.text for g in guesses].index(password) + 1


def assert_not_leaked(password: str, result: ProbeResult, state_dir: Path) -> None:
    """The password is in neither the result (its repr, every field) nor any byte of the state directory."""
    assert password not in repr(result)
    for path in state_dir.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path


def open_store(tmp_path: Path) -> tuple[StateStore, Path]:
    """A fresh state directory."""
    directory = tmp_path / "state"
    return StateStore(str(directory)), directory
