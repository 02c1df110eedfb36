"""ModSecurity rules text read as directives: what virtual patches and narrowed CRS rules are checked and built
from (the engine itself is what decides whether rules load)."""

from __future__ import annotations

__all__ = ["directives"]


def directives(text: str) -> list[str]:
    """The rules text's directives, continuation lines joined, comments and blank lines left out."""
    out: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        out.append(pending + stripped)
        pending = ""
    if pending:
        out.append(pending)
    return out
