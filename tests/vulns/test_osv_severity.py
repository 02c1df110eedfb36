"""CVSS base scores computed from the vectors OSV records carry (values of the FIRST specification's
examples and calculators), and vectors that get no score."""

from __future__ import annotations

import pytest

from hostguard.vulns.cvss import base_score, rating
from hostguard.vulns.match import severity_json
from hostguard.vulns.osv import Severity


@pytest.mark.parametrize(("kind", "vector", "score"), [
    ("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
    ("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
    ("CVSS_V3", "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
    ("CVSS_V3", "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8),
    ("CVSS_V3", "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9),
    ("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
    ("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P/RL:O", 9.8),  # temporal metrics ignored
    ("CVSS_V2", "AV:N/AC:L/Au:N/C:C/I:C/A:C", 10.0),
    ("CVSS_V2", "AV:N/AC:L/Au:N/C:P/I:P/A:P", 7.5),
    ("CVSS_V2", "AV:N/AC:M/Au:N/C:N/I:P/A:N", 4.3),
])
def test_base_scores(kind: str, vector: str, score: float) -> None:
    assert base_score(kind, vector) == score


@pytest.mark.parametrize(("kind", "vector"), [
    ("CVSS_V4", "CVSS:4.0/AV:N/AC:L/AT:N/PR:H/UI:N/VC:L/VI:L/VA:N/SC:N/SI:N/SA:N"),
    ("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H"),      # A missing
    ("CVSS_V3", "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),  # unknown value
    ("CVSS_V3", "CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),  # repeated
    ("CVSS_V3", "AV:N/AC:L/Au:N/C:C/I:C/A:C"),                     # a v2 vector under the v3 type
    ("Ubuntu", "high"),
])
def test_no_score_without_a_well_formed_v2_or_v3_vector(kind: str, vector: str) -> None:
    assert base_score(kind, vector) is None
    assert severity_json(Severity(kind, vector)) == {"type": kind, "score": vector}


def test_ratings_and_json() -> None:
    assert [rating(s) for s in (0.0, 3.9, 4.0, 6.9, 7.0, 8.9, 9.0)] == [
        "none", "low", "medium", "medium", "high", "high", "critical"]
    assert rating(9.5, "CVSS_V2") == "high"
    assert severity_json(Severity("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N")) == {
        "type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", "base_score": 6.1,
        "rating": "medium"}
