"""Config: defaults for everything, clear errors for typos and bad types."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostguard.config import ConfigError, defaults, load


def test_no_file_means_defaults(tmp_path: Path, monkeypatch) -> None:
    assert load(None)["ports"]["allowed"] == ["ssh", 80, 443] or Path("/etc/hostguard/hostguard.toml").exists()


def test_override_merges(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[ssh]\nmax_auth_tries = 6\n")
    cfg = load(str(f))
    assert cfg["ssh"]["max_auth_tries"] == 6
    assert cfg["ssh"]["report_default_port"] == defaults()["ssh"]["report_default_port"]


@pytest.mark.parametrize("text, message", [
    ("[ssh\n", "Expected"),
    ("[ssh]\nmax_auth_tries = 'six'\n", "must be int"),
    ("[sssh]\nx = 1\n", "unknown setting 'sssh'"),
    ("[ssh]\nreport_default_port = 1\n", "must be bool"),
])
def test_bad_config_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load(str(f))


def test_garbage_bytes(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(str(f))
