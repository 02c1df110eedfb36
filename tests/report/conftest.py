"""One shared report that every renderer must cope with, and an empty one.

The shared report holds a finding of every severity, a non-UTF-8 path (bytes decoded with
``surrogateescape``) in a target and in evidence, 10 kB of evidence, a path+line target, a port target
(no path), nested evidence, rich markup characters in a title, two skipped entries (one per-item, with
a non-UTF-8 name in its item and detail), a ``root`` label, rules for the checks used (one with tags
and references, one never used), and one finding whose id has no rule at all.
"""

from __future__ import annotations

import pytest

from hostguard.findings import Finding, HostId, Report, Rule, Severity, Skipped, SkipReason
from hostguard.remediation import Command, Edit, Param, Remediation

WEBSHELL_BYTES = b"/srv/www/\xff.php"
WEBSHELL = WEBSHELL_BYTES.decode("utf-8", "surrogateescape")
HUGE = "<?php eval(base64_decode($_POST['c'])); ?>" + "A" * 10_240
ITEM_BYTES = b"/home/caf\xe9/.ssh/authorized_keys"
ITEM = ITEM_BYTES.decode("utf-8", "surrogateescape")
NO_RULE_ID = "legacy.retired_check"

HOST = HostId(machine_id="0123456789abcdef0123456789abcdef", state_uuid="6f1c7a52-4c2e-4f7e-9a59-0d7f0a1b2c3d",
              hostname="web01.example.test")

ROOT_LOGIN = Finding(
    id="ssh.root_password_login", category="ssh", severity=Severity.HIGH,
    title="root can log in with a password [PermitRootLogin yes]",
    target={"kind": "path", "path": "/etc/ssh/sshd_config", "line": 42},
    evidence={"setting": "PermitRootLogin", "value": "yes", "line": 42},
    remediation=Remediation("Set PermitRootLogin prohibit-password and reload sshd.", (
        Edit("/etc/ssh/sshd_config", 42, "PermitRootLogin yes", "PermitRootLogin prohibit-password"),
        Command(("sshd", "-t")), Command(("systemctl", "reload", "sshd")))))

EXTRA_UID0 = Finding(
    id="accounts.extra_uid0", category="accounts", severity=Severity.CRITICAL,
    title="Account toor has uid 0",
    target={"kind": "user", "user": "toor"},
    evidence={"uid": 0, "passwd_line": 3, "shell": "/bin/bash"},
    remediation=Remediation.by_hand("Remove the account or give it its own uid.",
                                    "Only you know whether toor is yours.",
                                    Param("NEW_UID", "a free UID for the account", "1005")))

REDIS = Finding(
    id="ports.exposed_service", category="ports", severity=Severity.HIGH,
    title="redis listens on every address",
    target={"kind": "port", "port": 6379, "proto": "tcp", "address": "0.0.0.0"},
    evidence={"process": {"name": "redis-server", "pid": 812},
              "socket": {"local": {"address": "0.0.0.0", "port": 6379}, "state": "LISTEN"},
              "listeners": [{"address": "0.0.0.0", "port": 6379}]},
    remediation=Remediation("Bind redis to 127.0.0.1 (bind 127.0.0.1 in redis.conf)."))

WEBSHELL_FINDING = Finding(
    id="files.suspicious_script", category="files", severity=Severity.MEDIUM,
    title="PHP file that evaluates request data",
    target={"kind": "path", "path": WEBSHELL},
    evidence={"path": WEBSHELL, "excerpt": HUGE, "size": len(HUGE)},
    remediation=Remediation("Inspect and remove the file; look for how it got there."))

RETIRED = Finding(
    id=NO_RULE_ID, category="legacy", severity=Severity.LOW,
    title="A finding from a check this report has no rule for",
    target={"kind": "host", "host": "web01.example.test"},
    evidence={},
    remediation=Remediation(""))

REACHABILITY = Finding(
    id="firewall.reachability", category="firewall", severity=Severity.INFO,
    title="Firewall lets everything in",
    target={"kind": "host", "host": "web01.example.test"},
    evidence={"backend": "nftables", "policy": "accept"},
    remediation=Remediation("Add a default-deny input policy."))

SKIP_WHOLE = Skipped(family="firewall", check="firewall.service_reachable", reason=SkipReason.TOOL_MISSING,
                     detail="nft is not installed")
SKIP_ITEM = Skipped(family="accounts", check="accounts.ssh_key_unusual", reason=SkipReason.ERROR,
                    detail=f"open {ITEM}: Permission denied", item=ITEM)

RULES = (
    Rule(id="ssh.root_password_login", family="ssh", severity=Severity.HIGH,
         summary="root can log in with a password",
         doc="A password login for root lets anyone on the internet guess the most powerful account.",
         references=("https://man.openbsd.org/sshd_config#PermitRootLogin",),
         tags=("T1110.001", "T1078.003"), aliases=("ssh.permit_root_login",), looks_at=("sshd",)),
    Rule(id="accounts.extra_uid0", family="accounts", severity=Severity.CRITICAL,
         summary="A second account with uid 0", doc="Every uid-0 account is root.", looks_at=("accounts",)),
    Rule(id="ports.exposed_service", family="ports", severity=Severity.HIGH,
         summary="A local-only service listens on a public address", looks_at=("listeners",)),
    Rule(id="files.suspicious_script", family="files", severity=Severity.MEDIUM,
         summary="A script that runs request data"),
    Rule(id="firewall.reachability", family="firewall", severity=Severity.INFO,
         summary="How reachable this host is", references=("https://wiki.nftables.org/",)),
    Rule(id="ssh.password_auth", family="ssh", severity=Severity.MEDIUM,
         summary="Password logins are allowed", doc="Not used by any finding of the shared report."),
)

# Most severe first, then by id (Report.sorted_findings).
EXPECTED_ORDER = ["accounts.extra_uid0", "ports.exposed_service", "ssh.root_password_login",
                  "files.suspicious_script", NO_RULE_ID, "firewall.reachability"]


@pytest.fixture
def report() -> Report:
    """The shared report (findings deliberately given out of order)."""
    return Report(host=HOST, started="2024-05-01T12:00:00Z",
                  findings=(REACHABILITY, ROOT_LOGIN, WEBSHELL_FINDING, RETIRED, REDIS, EXTRA_UID0),
                  skipped=(SKIP_WHOLE, SKIP_ITEM), root="/mnt/image", rules=RULES)


@pytest.fixture
def empty_report() -> Report:
    """A scan that ran everything and found nothing."""
    return Report(host=HOST, started="2024-05-01T12:00:00Z", findings=(), skipped=(), rules=RULES)
