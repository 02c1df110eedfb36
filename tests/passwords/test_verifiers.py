"""crypt(3) schemes through libxcrypt: recognition, known answers, verification."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.data import load_toml
from hostguard.passwords.verifiers import CryptVerifier, VerifierUnavailable, crypt_verifier, scheme_of

KAT = load_toml("weak_passwords/crypt-known-answers.toml")


@pytest.mark.parametrize("scheme", sorted(KAT["schemes"]))
def test_every_scheme_passes_its_known_answer_here(scheme: str) -> None:
    assert crypt_verifier().working_schemes()[scheme] == "ok"
    hashed = KAT["schemes"][scheme]
    assert scheme_of(hashed) == scheme
    assert crypt_verifier().verify(KAT["password"].encode(), hashed)
    assert not crypt_verifier().verify(b"wrong-answer", hashed)  # differs within 8 chars: DES truncates


@pytest.mark.parametrize("text", ["", "*", "!", "!$y$j9T$abc", "$argon2id$v=19$x", "plain", "$6$short$abc"])
def test_unknown_or_locked_hashes_have_no_scheme(text: str) -> None:
    assert scheme_of(text) is None


def test_nul_in_candidate_never_matches() -> None:
    assert not crypt_verifier().verify(b"hostguard\0-known-answer", KAT["schemes"]["sha512"])


@given(st.text(min_size=1, max_size=120))
@settings(max_examples=200)
def test_any_stored_text_gives_an_answer_never_an_exception(stored: str) -> None:
    """A crafted shadow field (non-ASCII, surrogates from undecodable bytes) is no match, never a crash."""
    assert crypt_verifier().verify(b"password", stored) in (True, False)


def test_a_non_ascii_field_that_looks_like_a_hash_is_no_match() -> None:
    near = KAT["schemes"]["sha512"][:-1] + "\u00e9"
    assert not crypt_verifier().verify(KAT["password"].encode(), near)


def test_missing_library_is_reported() -> None:
    with pytest.raises(VerifierUnavailable, match="crypt_rn"):
        CryptVerifier("libdoes-not-exist.so.9")
