"""TOML configuration with a default for every setting; no config file is needed to run.

The defaults live in ``data/default-config.toml``. A user file may override any key; an unknown section or
key, or a value of the wrong type, is a configuration error (exit 2), so a typo never silently disables
a check.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

DEFAULT_PATH = "/etc/hostguard/hostguard.toml"


class ConfigError(Exception):
    """The configuration file is missing, unreadable or malformed."""


def defaults() -> dict[str, Any]:
    """The shipped defaults."""
    text = resources.files("hostguard.data").joinpath("default-config.toml").read_text("utf-8")
    return tomllib.loads(text)


def _merge(base: dict[str, Any], override: dict[str, Any], where: str) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        path = f"{where}.{key}" if where else key
        if key not in base:
            raise ConfigError(f"unknown setting '{path}'")
        default = base[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"'{path}' must be a table")
            merged[key] = _merge(default, value, path)
            continue
        if isinstance(default, bool) != isinstance(value, bool) or (
            not isinstance(value, type(default)) and not (isinstance(default, float) and isinstance(value, int))
        ):
            raise ConfigError(f"'{path}' must be {type(default).__name__}, not {type(value).__name__}")
        merged[key] = value
    return merged


def load(path: str | None) -> dict[str, Any]:
    """Defaults merged with ``path`` (or the system file when it exists and no path is given)."""
    base = defaults()
    if path is None:
        if not Path(DEFAULT_PATH).is_file():
            return base
        path = DEFAULT_PATH
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"config {path}: {exc.strerror}") from exc
    try:
        user = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config {path}: not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: {exc}") from exc
    try:
        return _merge(base, user, "")
    except ConfigError as exc:
        raise ConfigError(f"config {path}: {exc}") from exc
