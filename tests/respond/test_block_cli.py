"""`hostguard block`, `unblock` and `blocks` as the owner runs them: inside a network namespace the test made
(never this machine's ruleset), with the real collector of the owner's addresses (the namespace's own
addresses and routes, a resolv.conf bind-mounted in a private mount namespace, a real sshd session)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hostguard.data import load_toml
from tests.conftest import need_root, need_tool
from tests.netns import CLIENT_V4, SERVER_V4
from tests.respond.test_block_live import ALLOWED_V4, SPARE_V4, BlockNs, block_ns
from tests.sshd_helpers import prepare_sshd

UNIT = Path(__file__).parents[2] / "src" / "hostguard" / "data" / "block" / "hostguard-blocks.service"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def isolated(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    """hostguard in a fresh, empty network namespace (`unshare -n`): even a bug cannot reach this machine's
    ruleset."""
    need_root("a network namespace")
    need_tool("unshare", "nft")
    return subprocess.run(["unshare", "-n", sys.executable, "-m", "hostguard.cli", "--state", str(state), *args],
                          capture_output=True, text=True, env=ENV, timeout=120)


@pytest.mark.parametrize(("args", "message"), [
    (["block", "999.1.1.1"], "'999.1.1.1' is not an IP address or network"),
    (["block", "198.51.100.7", "--for", "3x"], "--for '3x': a duration is a number and a unit"),
    (["block", "198.51.100.7", "--for", "400d"], "a block lasts from 1s to 365d"),
    (["unblock", "not-an-ip"], "'not-an-ip' is not an IP address or network"),
    (["unblock", "198.51.100.7"], "198.51.100.7/32 is not blocked"),
    (["blocks", "--format", "xml"], "invalid choice: 'xml'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    done = isolated(*args, state=tmp_path / "state")
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


def test_a_bad_never_entry_in_the_config_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "hostguard.toml"
    config.write_text('[block]\nnever = ["gateway.test"]\n')
    done = isolated("--config", str(config), "blocks", state=tmp_path / "state")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "never: 'gateway.test' is not an IP address or network" in done.stderr


def in_server(ns: BlockNs, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """hostguard in the server namespace, with its own resolv.conf bind-mounted in a private mount namespace."""
    resolv = tmp_path / "resolv.conf"
    config = tmp_path / "hostguard.toml"
    script = 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"'
    return subprocess.run(["ip", "netns", "exec", ns.pair.server, "unshare", "-m", "--propagation", "private",
                           "sh", "-c", script, "sh", str(resolv), sys.executable, "-m", "hostguard.cli",
                           "--config", str(config), "--state", str(tmp_path / "state"), *args],
                          capture_output=True, text=True, env=ENV, timeout=120)


def test_the_owners_addresses_are_refused_with_their_reason_and_an_attacker_is_blocked(tmp_path: Path) -> None:
    (tmp_path / "resolv.conf").write_text("nameserver 198.51.100.53\n")
    (tmp_path / "hostguard.toml").write_text(f'[block]\nnever = ["{ALLOWED_V4}", "198.51.100.64/26"]\n')
    with block_ns() as ns:
        subprocess.run(["ip", "-n", ns.pair.server, "route", "add", "default", "via", "198.51.100.254"], check=True)
        refusals = {
            SERVER_V4: "it is 198.51.100.1/32 (an address of this machine (hgs",
            "198.51.100.254": "it is 198.51.100.254/32 (a default gateway (via hgs",
            "198.51.100.53": "it is 198.51.100.53/32 (a DNS resolver in /etc/resolv.conf)",
            "198.51.100.70": "it lies in 198.51.100.64/26 (in the [block] never list)",
            ALLOWED_V4: "it is 198.51.100.3/32 (in the [block] never list)",
            "127.0.0.1": "(loopback)",
            "198.51.100.0/25": "it covers 198.51.100.3/32 (in the [block] never list), covers 198.51.100.64/26 (in "
                               "the [block] never list), covers 198.51.100.53/32 (a DNS resolver in /etc/resolv.conf)"
                               ", covers 198.51.100.1/32 (an address of this machine (hgs",
        }
        for target, why in refusals.items():
            done = in_server(ns, tmp_path, "block", target, "--for", "1h")
            assert done.returncode == 2 and why in done.stderr and done.stderr.count("\n") == 1, (target, done.stderr)
        done = in_server(ns, tmp_path, "block", CLIENT_V4, "--for", "1h", "--reason", "brute force")
        assert done.returncode == 0 and done.stdout.startswith(f"blocked {CLIENT_V4}/32 until "), done.stderr
        assert ns.reaches(CLIENT_V4, SPARE_V4, ALLOWED_V4) == {CLIENT_V4: False, SPARE_V4: True, ALLOWED_V4: True}
        assert {e["val"] for e in ns.kernel_set("allow4")} >= {SERVER_V4, "198.51.100.254", "198.51.100.53",
                                                              "198.51.100.64/26", ALLOWED_V4, "127.0.0.0/8"}
        listing = json.loads(in_server(ns, tmp_path, "blocks", "--format", "json").stdout)
        assert [(b["network"], b["reason"], b["source"]) for b in listing["blocks"]] == [
            (f"{CLIENT_V4}/32", "brute force", "manual")]
        assert listing["kernel"] == {"problems": []}
        # a forced block of the owner's gateway is recorded, and the kernel still lets it through
        done = in_server(ns, tmp_path, "block", "198.51.100.254", "--force")
        assert done.returncode == 0 and "kernel still accepts 198.51.100.254/32 (a default gateway" in done.stdout
        # reload of the firewall, then the unit's command
        subprocess.run([*ns.nft.prefix, "flush", "ruleset"], check=True)
        assert ns.reaches(CLIENT_V4) == {CLIENT_V4: True}
        done = in_server(ns, tmp_path, "blocks", "--restore")
        assert done.returncode == 0 and done.stdout.startswith("restored 2 block element(s): table inet hostguard "
                                                               "is missing"), done.stdout
        assert ns.reaches(CLIENT_V4) == {CLIENT_V4: False}
        assert in_server(ns, tmp_path, "blocks", "--restore").stdout == "hostguard's nftables table is in place\n"
        done = in_server(ns, tmp_path, "unblock", CLIENT_V4, "--reason", "owner")
        assert done.stdout == f"unblocked {CLIENT_V4}/32 (was: brute force)\n"
        assert ns.reaches(CLIENT_V4) == {CLIENT_V4: True}


SSHD_CONFIG = """HostKey {key}
ListenAddress 0.0.0.0
Port 2222
PidFile {tmp}/sshd.pid
AuthorizedKeysFile {tmp}/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
"""


def test_an_ssh_session_peer_is_protected_but_a_connection_still_authenticating_is_not(tmp_path: Path) -> None:
    """Real sshd in the server namespace: a logged-in key session from one client address makes that
    address refused; a TCP connection to sshd that never authenticates (what a brute-forcer holds) does not."""
    host_key = prepare_sshd(tmp_path)
    need_tool("ssh")
    (tmp_path / "resolv.conf").write_text("")
    (tmp_path / "hostguard.toml").write_text("")
    client_key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(client_key)], check=True)
    (tmp_path / "authorized_keys").write_text((tmp_path / "id_ed25519.pub").read_text())
    (tmp_path / "sshd_config").write_text(SSHD_CONFIG.format(key=host_key, tmp=tmp_path))
    with block_ns() as ns:
        ns.pair.spawn(ns.pair.server, ["/usr/sbin/sshd", "-D", "-f", str(tmp_path / "sshd_config")])
        deadline = time.time() + 10
        while time.time() < deadline and not ns.reaches(SPARE_V4, port=2222)[SPARE_V4]:
            time.sleep(0.2)
        ns.pair.spawn(ns.pair.client, ["ssh", "-i", str(client_key), "-b", CLIENT_V4, "-p", "2222", "-T",
                                       "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                                       "-o", "BatchMode=yes", f"root@{SERVER_V4}", "sleep", "60"])
        hold = (f"import socket, time\ns = socket.socket()\ns.bind(('{SPARE_V4}', 0))\ns.connect(('{SERVER_V4}', 2222))\n"
                "print('up', flush=True)\ntime.sleep(60)\n")
        holder = subprocess.Popen(["ip", "netns", "exec", ns.pair.client, sys.executable, "-c", hold],
                                  stdout=subprocess.PIPE, text=True)
        ns.pair.procs.append(holder)  # type: ignore[arg-type]  # a text-mode Popen, stopped the same way
        assert holder.stdout is not None and holder.stdout.readline().strip() == "up"
        deadline = time.time() + 15
        while time.time() < deadline and not session_up(ns.pair.server):
            time.sleep(0.2)
        assert session_up(ns.pair.server), "the key login to the test's sshd did not come up"
        done = in_server(ns, tmp_path, "block", CLIENT_V4)
        assert done.returncode == 2 and "peer of a current SSH session (port 2222)" in done.stderr, done.stderr
        done = in_server(ns, tmp_path, "block", SPARE_V4, "--for", "10m", "--reason", "brute force on sshd")
        assert done.returncode == 0, done.stderr
        assert ns.reaches(SPARE_V4, CLIENT_V4, port=2222) == {SPARE_V4: False, CLIENT_V4: True}


def session_up(ns: str) -> bool:
    """Whether an sshd in namespace ``ns`` shows a logged-in root session (the title OpenSSH sets after auth)."""
    import psutil

    inode = os.stat(f"/run/netns/{ns}").st_ino
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            here = os.stat(f"/proc/{proc.info['pid']}/ns/net").st_ino == inode
        except OSError:
            continue
        if here and any("root@notty" in part for part in proc.info["cmdline"] or ()):
            return True
    return False


def test_the_boot_unit_restores_after_nftables_and_systemd_accepts_it(tmp_path: Path) -> None:
    """The shipped oneshot unit: ordered after nftables.service, re-run on its reloads, running the restore
    command tested above; `systemd-analyze verify` with hostguard on systemd's search path (a private mount
    of a temp dir over /usr/local/sbin, which holds only a link to this hostguard)."""
    need_root("a private mount namespace")
    need_tool("systemd-analyze", "unshare")
    unit = load_unit(UNIT.read_text())
    assert unit["Service"]["Type"] == ["oneshot"] and unit["Service"]["RemainAfterExit"] == ["yes"]
    assert unit["Service"]["ExecStart"] == ["hostguard blocks --restore"] == unit["Service"]["ExecReload"]
    assert "nftables.service" in unit["Unit"]["After"][0].split()
    assert unit["Unit"]["PartOf"] == ["nftables.service"] == unit["Unit"]["ReloadPropagatedFrom"]
    units, bin_dir = tmp_path / "units", tmp_path / "bin"
    units.mkdir()
    bin_dir.mkdir()
    (units / UNIT.name).write_text(UNIT.read_text())
    (bin_dir / "hostguard").symlink_to(Path(sys.executable).parent / "hostguard")
    script = 'mount --bind "$1" /usr/local/sbin && exec systemd-analyze verify --man=no "$2"'
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", str(bin_dir),
                           UNIT.name], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:", "SYSTEMD_LOG_COLOR": "0"})
    assert done.returncode == 0 and UNIT.name not in done.stderr, done.stderr
    # the near miss: the same unit with a typo'd directive is caught by the same verify
    (units / UNIT.name).write_text(UNIT.read_text().replace("RemainAfterExit=yes", "RemainAfterExit=maybe"))
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", str(bin_dir),
                           UNIT.name], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:", "SYSTEMD_LOG_COLOR": "0"})
    assert f"{UNIT.name}:" in done.stderr and "Failed to parse boolean value" in done.stderr


def load_unit(text: str) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault(section, {}).setdefault(key, []).append(value)
    return out


def test_the_table_layout_data_matches_the_template() -> None:
    layout = load_toml("block/block.toml")
    template = (UNIT.parent / "ruleset.nft").read_text()
    for name, chain in layout["chains"].items():
        assert f"chain {name} {{\n\t\ttype filter hook {chain['hook']} priority ${name}_priority;" in template
