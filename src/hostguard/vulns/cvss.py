"""CVSS base scores of v2 and v3.x vectors, the formulas of the FIRST specifications.

OSV records carry CVSS as a vector string; owners sort by the number. v2 and v3 base scores are a few
multiplications, so they are computed here; a CVSS v4 score needs the specification's large lookup tables,
so v4 vectors are reported as they are (``base_score`` returns None). A vector that is not well formed has
no score either: the vector itself is always kept by the caller.
"""

from __future__ import annotations

import math

__all__ = ["base_score", "rating"]

_V3 = {
    "AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
    "AC": {"L": 0.77, "H": 0.44},
    "PR": {"N": 0.85, "L": 0.62, "H": 0.27},
    "UI": {"N": 0.85, "R": 0.62},
    "S": {"U": 0.0, "C": 0.0},
    "C": {"H": 0.56, "L": 0.22, "N": 0.0},
    "I": {"H": 0.56, "L": 0.22, "N": 0.0},
    "A": {"H": 0.56, "L": 0.22, "N": 0.0},
}
_V3_PR_CHANGED = {"N": 0.85, "L": 0.68, "H": 0.5}

_V2 = {
    "AV": {"L": 0.395, "A": 0.646, "N": 1.0},
    "AC": {"H": 0.35, "M": 0.61, "L": 0.71},
    "Au": {"M": 0.45, "S": 0.56, "N": 0.704},
    "C": {"N": 0.0, "P": 0.275, "C": 0.660},
    "I": {"N": 0.0, "P": 0.275, "C": 0.660},
    "A": {"N": 0.0, "P": 0.275, "C": 0.660},
}


def _metrics(parts: list[str], table: dict[str, dict[str, float]]) -> dict[str, str] | None:
    """The base metrics of a vector (temporal and environmental ones are allowed and ignored); None when a
    base metric is missing, repeated or has an unknown value."""
    values: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition(":")
        if not sep or key in values:
            return None
        values[key] = value
    base = {k: values.get(k, "") for k in table}
    if any(v not in table[k] for k, v in base.items()):
        return None
    return base


def _roundup_v31(x: float) -> float:
    scaled = round(x * 100000)
    return scaled / 100000.0 if scaled % 10000 == 0 else (math.floor(scaled / 10000) + 1) / 10.0


def _v3(vector: str) -> float | None:
    head, _, rest = vector.partition("/")
    if head not in ("CVSS:3.0", "CVSS:3.1"):
        return None
    m = _metrics(rest.split("/"), _V3)
    if m is None:
        return None
    changed = m["S"] == "C"
    iss = 1 - (1 - _V3["C"][m["C"]]) * (1 - _V3["I"][m["I"]]) * (1 - _V3["A"][m["A"]])
    impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 if changed else 6.42 * iss
    pr = (_V3_PR_CHANGED if changed else _V3["PR"])[m["PR"]]
    exploitability = 8.22 * _V3["AV"][m["AV"]] * _V3["AC"][m["AC"]] * pr * _V3["UI"][m["UI"]]
    if impact <= 0:
        return 0.0
    total = min(1.08 * (impact + exploitability) if changed else impact + exploitability, 10.0)
    # 3.0 rounds up at one decimal; 3.1 defines Roundup on integers to avoid floating-point surprises
    return _roundup_v31(total) if head == "CVSS:3.1" else math.ceil(total * 10) / 10.0


def _v2(vector: str) -> float | None:
    text = vector[1:-1] if vector.startswith("(") and vector.endswith(")") else vector
    m = _metrics(text.split("/"), _V2)
    if m is None:
        return None
    impact = 10.41 * (1 - (1 - _V2["C"][m["C"]]) * (1 - _V2["I"][m["I"]]) * (1 - _V2["A"][m["A"]]))
    exploitability = 20 * _V2["AV"][m["AV"]] * _V2["AC"][m["AC"]] * _V2["Au"][m["Au"]]
    f = 0.0 if impact == 0 else 1.176
    score = ((0.6 * impact) + (0.4 * exploitability) - 1.5) * f
    return float(round(score + 1e-9, 1))


def base_score(severity_type: str, vector: str) -> float | None:
    """The base score of a ``CVSS_V2`` or ``CVSS_V3`` vector; None for v4 and for vectors not well formed."""
    if severity_type == "CVSS_V3":
        return _v3(vector.strip())
    if severity_type == "CVSS_V2":
        return _v2(vector.strip())
    return None


def rating(score: float, severity_type: str = "CVSS_V3") -> str:
    """The qualitative rating: v3's none/low/medium/high/critical, v2's low/medium/high (NVD's bands)."""
    if severity_type == "CVSS_V2":
        return "low" if score < 4.0 else "medium" if score < 7.0 else "high"
    if score == 0:
        return "none"
    return "low" if score < 4.0 else "medium" if score < 7.0 else "high" if score < 9.0 else "critical"
