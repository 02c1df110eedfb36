"""Typed TOML configuration: frozen sections with defaults; no config file is needed to run.

Each family declares its section as a frozen dataclass (``SshConfig`` in ``checks/ssh.py``) whose field
defaults *are* the defaults and whose ``setting(help=...)`` text documents them; the engine adds its own
(``[scan]``, ``[suppress]``). The registry assembles the schema, so the list of sections and the default
config are derived, never written by hand. A user file may override any key. An unknown section or
key, a value of the wrong type or out of range is a configuration error naming the key and the file
(exit 2), so a typo never silently disables a check. A setting may be a table (a nested section), a list of
tables (``[[suppress.rules]]``) or a table of named tables (``[waf.sites.NAME]``: a ``Mapping[str, Section]``
whose names the owner chooses and whose keys are checked like any section's). ``hostguard config show`` prints the effective
values and where each came from.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, TypeVar, cast

DEFAULT_PATH = "/etc/hostguard/hostguard.toml"
DEFAULT = "default"

S = TypeVar("S")


class ConfigError(Exception):
    """The configuration file is missing, unreadable or malformed; the message names the file and key."""


def setting(default: Any, help: str, *, min: float | None = None, max: float | None = None) -> Any:  # noqa: A002
    """A config field: its default, the sentence ``config show`` prints above it, and its numeric range.

    A table of named tables (a ``Mapping``) is kept read-only (``MappingProxyType``), so a frozen section stays
    unchangeable; dataclasses refuse an unhashable default, so each instance gets it from a factory."""
    metadata = {"help": help, "min": min, "max": max}
    if isinstance(default, Mapping):
        frozen = types.MappingProxyType(dict(default))
        return field(default_factory=lambda: frozen, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Entry:
    """One effective setting, for ``config show``."""

    section: str
    key: str
    value: Any
    origin: str
    help: str


@dataclass(frozen=True)
class Config:
    """The effective configuration: one frozen section object per section name."""

    sections: Mapping[str, Any]
    origins: Mapping[str, str] = dataclasses.field(default_factory=dict)
    path: str | None = None

    def __getitem__(self, cls: type[S]) -> S:
        """The section of type ``cls`` (``config[SshConfig]``)."""
        for value in self.sections.values():
            if type(value) is cls:
                return value
        raise KeyError(f"no config section of type {cls.__name__}")

    def section_named(self, name: str) -> Any:
        """The section called ``name`` (``[ssh]``)."""
        return self.sections[name]

    def entries(self) -> Iterator[Entry]:
        """Every setting with its value, origin and help, section by section."""
        for name, section in self.sections.items():
            for f in dataclasses.fields(section):
                yield Entry(name, f.name, plain(getattr(section, f.name)),
                            self.origins.get(f"{name}.{f.name}", DEFAULT), f.metadata.get("help", ""))


def plain(value: Any) -> Any:
    """A section value as TOML/JSON data (tuples as lists, dataclasses as tables, None keys left out)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if getattr(value, f.name) is not None}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


# -- conversion ----------------------------------------------------------------------------------------

@cache
def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(tp: Any) -> str:
    """The expected type as the error names it: int, bool, str, float, list, table, or an enum's values."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        return "list"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp) if a is not type(None))
    if dataclasses.is_dataclass(tp) or origin in (Mapping, dict):
        return "table"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(str(m.value) for m in tp)
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"'{key}' must be {_describe(tp)}, not {type(value).__name__}")
        return tuple(_convert(v, typing.get_args(tp)[0], f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (Mapping, dict):   # named tables: [section.key.NAME], each checked as the value type says
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' must be table, not {type(value).__name__}")
        item = typing.get_args(tp)[1]
        return types.MappingProxyType({name: _convert(v, item, f"{key}.{name}") for name, v in value.items()})
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(tp):
            if arm is type(None):
                continue
            try:
                return _convert(value, arm, key)
            except ConfigError:
                continue
        raise ConfigError(f"'{key}' must be {_describe(tp)}, not {type(value).__name__}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' must be table, not {type(value).__name__}")
        return build_section(tp, value, key)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ConfigError(f"'{key}' must be {_describe(tp)}, not {value!r}") from None
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"'{key}' must be a finite number, not {value}")
        return float(value)
    if tp is Any or (isinstance(tp, type) and isinstance(value, tp) and (tp is bool or not isinstance(value, bool))):
        return value
    raise ConfigError(f"'{key}' must be {_describe(tp)}, not {type(value).__name__}")


def build_section(cls: type[S], data: Mapping[str, Any], where: str) -> S:
    """A section (or a nested table) from TOML data; unknown keys and bad values are errors naming the key."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = _hints(cast(Any, cls)) if data else {}  # evaluating annotations costs: defaults need none
    values: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{where}.{key}"
        if key not in fields:
            raise ConfigError(f"unknown setting '{path}' (known: {', '.join(fields)})")
        converted = _convert(value, hints[key], path)
        low, high = fields[key].metadata.get("min"), fields[key].metadata.get("max")
        if low is not None and converted < low:
            raise ConfigError(f"'{path}' must be at least {low}, not {value}")
        if high is not None and converted > high:
            raise ConfigError(f"'{path}' must be at most {high}, not {value}")
        values[key] = converted
    missing = [n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"'{where}' needs {', '.join(missing)}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{where}]: {exc}") from exc


def build(data: Mapping[str, Any], schema: Mapping[str, type], path: str | None = None) -> Config:
    """The config from parsed TOML ``data`` over the defaults of ``schema`` (section name -> class)."""
    sections: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for name in data:
        if name not in schema:
            raise ConfigError(f"unknown setting '{name}' (sections: {', '.join(schema)})")
    for name, cls in schema.items():
        given = data.get(name, {})
        if not isinstance(given, dict):
            raise ConfigError(f"'{name}' must be a table ([{name}])")
        sections[name] = build_section(cls, given, name)
        origins.update({f"{name}.{key}": path or "given" for key in given})
    return Config(sections, origins, path)


def load(path: str | None, schema: Mapping[str, type]) -> Config:
    """Defaults merged with ``path`` (or the system file when it exists and no path is given)."""
    if path is None:
        if not Path(DEFAULT_PATH).is_file():
            return build({}, schema)
        path = DEFAULT_PATH
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"config {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config {path}: not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: {exc}") from exc
    try:
        return build(data, schema, path)
    except ConfigError as exc:
        raise ConfigError(f"config {path}: {exc}") from exc
