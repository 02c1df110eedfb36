"""Validating a fix with the service's own tool before anything reloads it.

A config the service rejects must never reach a reload: sshd that fails to start again locks the owner
out. So the tool that reads the file judges it: ``sshd -t`` for /etc/ssh, ``visudo -c -f`` for sudoers,
``nft -c -f`` for nftables files, ``iptables-restore --test`` for iptables-persistent rules, and hostguard's own
config loader for /etc/hostguard/*.toml (enabling a WAF virtual patch). None of them
touches this machine: nft and iptables check inside a fresh user and network namespace; under ``--root``,
sshd reads absolute paths (Include, drop-ins), so it runs in a private mount namespace where the tree's
/etc/ssh is bind-mounted over /etc/ssh, with a throw-away host key (a tree rarely carries one) and a
private /run. A tool that is not installed here cannot judge: that is said, never taken as a pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass

TIMEOUT = 60
SBIN_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin"


@dataclass(frozen=True)
class Validation:
    """The verdict of one service's tool: ``ok`` True (accepted), False (rejected) or None (not validated)."""

    service: str
    ok: bool | None
    detail: str


def services(paths: Iterable[str]) -> dict[str, list[str]]:
    """The services whose configuration ``paths`` belong to, with the paths of each."""
    out: dict[str, list[str]] = {}
    for path in paths:
        if path.startswith("/etc/ssh/sshd_config"):
            out.setdefault("sshd", []).append(path)
        elif path == "/etc/sudoers" or path.startswith("/etc/sudoers.d/"):
            out.setdefault("sudoers", []).append(path)
        elif path == "/etc/nftables.conf" or path.endswith(".nft"):
            out.setdefault("nftables", []).append(path)
        elif path.startswith("/etc/iptables/rules.v"):
            out.setdefault("iptables", []).append(path)
        elif path.startswith("/etc/hostguard/") and path.endswith(".toml"):
            out.setdefault("hostguard", []).append(path)
    return out


def validate(paths: Iterable[str], root: str) -> list[Validation]:
    """Ask each affected service's own tool about the files as they are now."""
    results = []
    for service, files in services(paths).items():
        if service == "sshd":
            results.append(_sshd(root))
        elif service == "hostguard":
            results += [_hostguard(root, path) for path in files]
        else:
            results += [_one_file(service, root, path) for path in files]
    return results


def _tool(name: str) -> str | None:
    return shutil.which(name, path=SBIN_PATH)


def _inside(root: str, path: str) -> str | None:
    """``path`` of the tree as a real path, None when it leaves the tree through a symlink or is absent."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, path.lstrip("/")))
    inside = real == real_root or real.startswith(real_root.rstrip("/") + "/")
    return real if inside and os.path.exists(real) else None


def _run(argv: list[str]) -> tuple[bool, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return False, f"{argv[0]} did not answer within {TIMEOUT} s"
    text = " ".join((done.stderr + done.stdout).split())
    return done.returncode == 0, text[:500]


def _unshare(*flags: str) -> list[str]:
    """A private namespace: as root a plain one, otherwise inside a user namespace (mapped to root)."""
    return ["unshare", *flags] if os.geteuid() == 0 else ["unshare", "-r", *flags]


def _one_file(service: str, root: str, path: str) -> Validation:
    real = _inside(root, path)
    if real is None:
        return Validation(service, False, f"{path} is missing or leaves the tree")
    if service == "sudoers":
        tool = _tool("visudo")
        argv = [tool, "-c", "-f", real] if tool else []
        name = "visudo"
    elif service == "nftables":
        tool = _tool("nft")
        argv = [*_unshare("-n"), tool, "-c", "-f", real] if tool and _tool("unshare") else []
        name = "nft"
    else:
        name = "ip6tables-restore" if path.endswith(".v6") else "iptables-restore"
        tool = _tool(name)
        argv = [*_unshare("-n"), tool, "--test", real] if tool and _tool("unshare") else []
    if not argv:
        return Validation(service, None, f"{path}: not validated ({name} is not installed here)")
    ok, text = _run(argv)
    return Validation(service, ok, f"{path}: {name} " + ("accepts it" if ok else f"rejects it: {text}"))


def _hostguard(root: str, path: str) -> Validation:
    """hostguard's own config, read as every command reads it (the registry's schema: unknown keys and bad values
    refused), and the virtual patches it enables looked up (an unknown one stops the WAF from starting)."""
    from hostguard.config import ConfigError, load
    from hostguard.engine.registry import default_registry
    from hostguard.waf.config import WafConfig
    from hostguard.waf.ruleset import virtual_patch_rules

    real = _inside(root, path)
    if real is None:
        return Validation("hostguard", False, f"{path} is missing or leaves the tree")
    try:
        config = load(real, default_registry().schema())
        virtual_patch_rules(config[WafConfig].virtual_patches)
    except (ConfigError, ValueError) as exc:
        return Validation("hostguard", False, f"{path}: hostguard rejects it: {' '.join(str(exc).split())}")
    return Validation("hostguard", True, f"{path}: hostguard reads it")


SSHD_SCRIPT = ('mount --bind "$1" /etc/ssh && mount -t tmpfs -o mode=755 tmpfs /run && mkdir -m 755 /run/sshd '
               '&& shift && exec "$@"')


def _sshd(root: str) -> Validation:
    sshd = _tool("sshd")
    if sshd is None:
        return Validation("sshd", None, "not validated (sshd is not installed here)")
    if os.path.realpath(root) == "/":
        ok, text = _run([sshd, "-t"])
        return Validation("sshd", ok, "sshd -t " + ("accepts the config" if ok else f"rejects it: {text}"))
    etc_ssh = _inside(root, "/etc/ssh")
    if etc_ssh is None or _tool("unshare") is None or _tool("ssh-keygen") is None:
        why = "/etc/ssh is missing or leaves the tree" if etc_ssh is None else "unshare or ssh-keygen is missing"
        return Validation("sshd", None, f"not validated ({why})")
    with tempfile.TemporaryDirectory(prefix="hostguard-sshd-") as tmp:
        key = os.path.join(tmp, "host_key")
        made = subprocess.run([_tool("ssh-keygen") or "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key],
                              capture_output=True, text=True, check=False)
        if made.returncode != 0:
            return Validation("sshd", None, f"not validated (ssh-keygen failed: {made.stderr.strip()})")
        ok, text = _run([*_unshare("--mount", "--propagation", "private"), "sh", "-c", SSHD_SCRIPT, "sh", etc_ssh,
                         sshd, "-t", "-h", key])
    return Validation("sshd", ok, "sshd -t (the tree's /etc/ssh) " + ("accepts the config" if ok else
                                                                      f"rejects it: {text}"))


# Web servers: their own configuration test. On this host it runs as the owner would run it; on a tree, the
# tree's configuration directories are bind-mounted over this machine's in a private mount and network
# namespace, with a fresh /run and log directory (the test opens its logs, and ModSecurity its audit log), so
# the paths the configuration names (absolute, as on the tree's own system) are the tree's files and nothing
# of this machine is read as configuration or written. The server's programs and modules are this machine's.
WEB_SERVERS = {
    "nginx": (("nginx", "-t"), ("/etc/nginx",), "/var/log/nginx"),
    "apache": (("apache2ctl", "configtest"), ("/etc/apache2", "/etc/modsecurity"), "/var/log/apache2"),
}
MOUNT_SCRIPT = ('set -e; while [ "$1" != -- ]; do if [ "$1" = bind ]; then mount --bind "$2" "$3"; shift 3; '
                'else mount -t tmpfs -o mode=755 tmpfs "$2"; shift 2; fi; done; shift; '
                'mkdir -p -m 1777 /run/lock; exec "$@"')


def server_config_test(kind: str, root: str) -> Validation:
    """``nginx -t`` or ``apache2ctl configtest`` on this host's configuration or on a tree's (``root``)."""
    argv, config_dirs, log_dir = WEB_SERVERS[kind]
    tool = _tool(argv[0])
    if tool is None:
        return Validation(kind, None, f"not validated ({argv[0]} is not installed here)")
    name = " ".join(argv)
    if os.path.realpath(root) == "/":
        ok, text = _run([tool, *argv[1:]])
        return Validation(kind, ok, f"{name} " + ("accepts the configuration" if ok else f"rejects it: {text}"))
    mounts: list[str] = []
    for directory in config_dirs:
        inside = _inside(root, directory)
        if inside is None:
            continue
        if not os.path.isdir(directory):
            return Validation(kind, None, f"not validated ({directory} is missing here to mount the tree's over)")
        mounts += ["bind", inside, directory]
    if _tool("unshare") is None or not os.path.isdir(log_dir):
        why = "unshare is missing" if _tool("unshare") is None else f"{log_dir} is missing here"
        return Validation(kind, None, f"not validated ({why})")
    ok, text = _run([*_unshare("--mount", "--net", "--propagation", "private"), "sh", "-c", MOUNT_SCRIPT, "sh",
                     *mounts, "tmpfs", log_dir, "tmpfs", "/run", "--", tool, *argv[1:]])
    return Validation(kind, ok, f"{name} (the tree's configuration) " + ("accepts it" if ok else f"rejects it: {text}"))
