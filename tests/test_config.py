"""Config: defaults for everything, clear errors for typos and bad types."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostguard.checks.ports import PortsConfig
from hostguard.checks.ssh import SshConfig
from hostguard.config import ConfigError, load
from hostguard.engine.registry import default_registry

SCHEMA = default_registry().schema()


def test_no_file_means_defaults(tmp_path: Path, monkeypatch) -> None:
    assert load(None, SCHEMA)[PortsConfig].allowed == ("ssh", 80, 443) or Path("/etc/hostguard/hostguard.toml").exists()


def test_override_merges(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[ssh]\nmax_auth_tries = 6\n")
    cfg = load(str(f), SCHEMA)
    assert cfg[SshConfig].max_auth_tries == 6
    assert cfg[SshConfig].report_default_port == SshConfig().report_default_port
    assert cfg.origins["ssh.max_auth_tries"] == str(f)
    assert "ssh.report_default_port" not in cfg.origins


@pytest.mark.parametrize("text, message", [
    ("[ssh\n", "Expected"),
    ("[ssh]\nmax_auth_tries = 'six'\n", "must be int"),
    ("[sssh]\nx = 1\n", "unknown setting 'sssh'"),
    ("[ssh]\nreport_default_port = 1\n", "must be bool"),
    ("[ssh]\nmax_auth_tries = 'six'\n", "'ssh.max_auth_tries' must be int, not str"),
    ("[ssh]\nmaxauthtries = 3\n", "unknown setting 'ssh.maxauthtries'"),
    ("[weak_passwords]\nbudget_seconds = nan\n", "'weak_passwords.budget_seconds' must be a finite number"),
    ("[weak_passwords]\nbudget_seconds = -5\n", "'weak_passwords.budget_seconds' must be at least 0"),
    ("[ssh]\nprobe_addresses = ['nowhere']\n", "'nowhere' is not an IP address"),
    ("[ports]\nallowed = ['ssh', 'http']\n", "'http' is neither a port number"),
    ("[ports]\nallowed = [70000]\n", "70000 is not a port number"),
    ("[ports]\nextra_services = [{name = 'x'}]\n", "'ports.extra_services\\[0\\]' needs fix"),
    ("[scan]\nfail_on = 'urgent'\n", "'scan.fail_on' must be one of critical, high"),
    ("ssh = 3\n", "'ssh' must be a table"),
    ("[ports]\nextra_services = ['redis']\n", r"'ports.extra_services\[0\]' must be table, not str"),
    ("[ports]\nextra_services = [{name = 'x', fix = 'y', ports = [70000]}]\n", "70000 is not a port number"),
    ("[[suppress.rules]]\nid = 'ssh.default_port'\nnote = 'typo'\n", r"unknown setting 'suppress.rules\[0\].note'"),
])
def test_bad_config_is_one_clear_error_naming_key_and_file(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load(str(f), SCHEMA)
    assert str(info.value).startswith(f"config {f}: ")


def test_garbage_bytes(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(str(f), SCHEMA)
