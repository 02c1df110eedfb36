"""Build a ufw configuration for tests from the rule templates of the installed ufw package.

The templates are taken from this machine's ufw package at test time (never copied into the repository);
the test adds its own user rules.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import need_tool

TEMPLATES = Path("/usr/share/ufw/iptables")


def write_ufw_config(etc: Path, user_rules: list[str], user6_rules: list[str], input_policy: str = "DROP") -> None:
    """Write etc/ufw/*.rules, etc/ufw/ufw.conf and etc/default/ufw under ``etc``'s parent tree."""
    need_tool("ufw")
    if not TEMPLATES.is_dir():
        import pytest

        pytest.skip(reason="ufw's rule templates are missing (install the ufw package)")
    (etc / "ufw").mkdir(parents=True, exist_ok=True)
    (etc / "default").mkdir(parents=True, exist_ok=True)
    for name in ("before.rules", "after.rules", "before6.rules", "after6.rules"):
        shutil.copy(TEMPLATES / name, etc / "ufw" / name)
    for name, extra in (("user.rules", user_rules), ("user6.rules", user6_rules)):
        text = (TEMPLATES / name).read_text()
        marker = "### RULES ###\n"
        assert marker in text
        prefix = "ufw6" if "6" in name else "ufw"
        lines = "".join(line.replace("ufw-", f"{prefix}-") + "\n" for line in extra)
        (etc / "ufw" / name).write_text(text.replace(marker, marker + lines, 1))
    (etc / "ufw" / "ufw.conf").write_text("ENABLED=yes\nLOGLEVEL=low\n")
    (etc / "default" / "ufw").write_text(f'IPV6=yes\nDEFAULT_INPUT_POLICY="{input_policy}"\n'
                                         'DEFAULT_OUTPUT_POLICY="ACCEPT"\nDEFAULT_FORWARD_POLICY="DROP"\n'
                                         'MANAGE_BUILTINS=no\nIPT_SYSCTL=/etc/ufw/sysctl.conf\nIPT_MODULES=""\n')
