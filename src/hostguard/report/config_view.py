"""``hostguard config show``: the effective configuration as TOML a user can copy, each value's origin beside it."""

from __future__ import annotations

import json
import re
from typing import Any

from hostguard.config import DEFAULT, Config

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(name: str) -> str:
    """A TOML key: bare when it can be, quoted otherwise (a site called ``shop.example.test`` is one key, not
    three nested ones)."""
    return name if BARE_KEY.fullmatch(name) else _toml(name)


def _toml(value: Any) -> str:
    """A TOML value: JSON's string escapes are valid TOML basic strings; tables are written inline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")  # TOML forbids a raw DEL
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def render_toml(config: Config) -> str:
    """Every section and setting, with its help as a comment and its origin after the value."""
    source = f"overridden by {config.path}" if config.path else "no config file is in use"
    lines = [f"# hostguard's effective configuration: the defaults, {source}.",
             "# Copy any setting into /etc/hostguard/hostguard.toml (or --config FILE) to change it."]
    section = None
    for entry in config.entries():
        if entry.section != section:
            section = entry.section
            about = (type(config.section_named(section)).__doc__ or "").strip().split("\n")[0]
            about = about.removeprefix(f"[{section}]:").strip()
            about = about[:1].upper() + about[1:]
            lines += ["", *([f"# {about}"] if about else []), f"[{section}]"]
        if entry.help:
            lines.append(f"# {entry.help}")
        origin = "default" if entry.origin == DEFAULT else f"from {entry.origin}"
        lines.append(f"{entry.key} = {_toml(entry.value)}  # {origin}")
    return "\n".join(lines) + "\n"


def render_json(config: Config) -> str:
    """``{"file", "settings": {"section.key": {"value", "origin", "help"}}}``."""
    settings = {f"{e.section}.{e.key}": {"value": e.value, "origin": e.origin, "help": e.help} for e in config.entries()}
    return json.dumps({"file": config.path, "settings": settings}, indent=2, ensure_ascii=False) + "\n"
