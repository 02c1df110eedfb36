"""LogonEvent.json_line is the contract's JSON (what json.dumps(to_json()) writes), for any field values:
quotes, controls, separators, non-UTF-8 user names and methods (surrogates) and nulls."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.logons.events import OUTCOMES, LogonEvent

TEXT = st.none() | st.text(max_size=20) | st.sampled_from(["root", "a\"b", "a\\b", "\udcff", "\u2028", "x\ny", ""])
OURS = st.none() | st.text(st.characters(exclude_categories=("Cs",)), max_size=20)  # ip, time: hostguard's own text


@settings(max_examples=1500)
@given(st.text(max_size=10), st.integers(1, 10**9), OURS, st.sampled_from(OUTCOMES), st.integers(1, 10**6), TEXT,
       OURS, st.none() | st.integers(1, 65535), TEXT, OURS)
def test_json_line_is_the_encoders_answer(file: str, line: int, service: str | None, outcome: str, count: int,
                                          user: str | None, ip: str | None, port: int | None, method: str | None,
                                          time: str | None) -> None:
    event = LogonEvent(file, line, service or "sshd", outcome, count, user, ip, port, method, time)  # type: ignore[arg-type]
    expected = json.dumps(event.to_json(), ensure_ascii=False)
    file_json = json.dumps(event.to_json()["file"], ensure_ascii=False)
    assert event.json_line(file_json) == expected
    assert event.json_line(file_json) == expected  # the second time from the table of known texts
