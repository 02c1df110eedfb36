"""Rules, lists and defaults shipped with hostguard (data, not code)."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Any


@cache
def load_toml(name: str) -> dict[str, Any]:
    """A TOML file from this package, parsed once."""
    return tomllib.loads(resources.files(__name__).joinpath(name).read_text("utf-8"))
