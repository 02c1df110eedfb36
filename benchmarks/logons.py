"""How fast `hostguard logons parse` reads an auth.log, and in how much memory.

Generates a 1,000,000-line auth.log (sshd failures, invalid users, closes, probes, accepted keys, PAM lines,
vsftpd PAM, su, sudo, cron noise; IPv4, IPv4-mapped and IPv6 clients; classic and RFC 3339 stamps) in a
temp dir, then times the parse layer over it: in-process in one pass (lines/s of the parser alone) and
the whole command (`hostguard logons parse FILE` writing JSON Lines to /dev/null: with two usable CPUs it
splits a large file between two processes, see hostguard/logons/split.py), and prints the peak RSS of the
latter (per process). `fail2ban-regex FILE sshd` is timed on the same file for comparison (issue 11's target: at least
10x fail2ban in constant memory): the installed one, or one unpacked without installing it (no daemon
started, no firewall touched): `apt-get download fail2ban && dpkg-deb -x fail2ban_*.deb DIR`, then
`--fail2ban-root DIR`.
Run: .venv/bin/python benchmarks/logons.py [--lines N] [--keep FILE] [--fail2ban-root DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime

from hostguard.logons.parse import parse_lines
from hostguard.logons.sources import SourceStats, open_log, read_blocks
from hostguard.logons.split import usable_cpus
from hostguard.logons.timestamps import Clock

PAM_KV = "logname= uid=0 euid=0 tty=ssh ruser="
UNPACKED_FAIL2BAN = "/var/cache/hostguard-tests/fail2ban"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def address(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.6:
        return f"198.51.100.{rng.randrange(1, 255)}"
    if kind < 0.8:
        return f"::ffff:192.0.2.{rng.randrange(1, 255)}"
    return f"2001:db8::{rng.randrange(1, 0xffff):x}"


def generate(path: str, count: int) -> None:
    """A mixed auth.log of ``count`` lines (deterministic: seeded)."""
    rng = random.Random(11)
    users = ["root", "admin", "oracle", "ubuntu", "test", "deploy", "git", "postgres"]
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(count):
            sec = i // 20
            day, clock = 1 + (sec // 86400) % 28, f"{(sec // 3600) % 24:02d}:{(sec // 60) % 60:02d}:{sec % 60:02d}"
            if i % 3:
                stamp = f"{MONTHS[(sec // 86400) % 12]} {day:2d} {clock}"
            else:
                stamp = f"2024-03-{day:02d}T{clock}.{i % 1000000:06d}+00:00"
            pid = 1000 + i % 30000
            ip, port, user = address(rng), rng.randrange(1024, 65535), rng.choice(users)
            pick = rng.random()
            if pick < 0.30:
                msg = f"sshd[{pid}]: Failed password for {user} from {ip} port {port} ssh2"
            elif pick < 0.40:
                msg = f"sshd[{pid}]: Failed password for invalid user {user}x from {ip} port {port} ssh2"
            elif pick < 0.48:
                msg = f"sshd[{pid}]: Invalid user {user}x from {ip} port {port}"
            elif pick < 0.58:
                msg = f"sshd[{pid}]: Connection closed by authenticating user {user} {ip} port {port} [preauth]"
            elif pick < 0.63:
                msg = f"sshd[{pid}]: pam_unix(sshd:auth): authentication failure; {PAM_KV} rhost={ip}  user={user}"
            elif pick < 0.68:
                msg = f"sshd-session[{pid}]: Accepted publickey for {user} from {ip} port {port} ssh2: ED25519 SHA256:k"
            elif pick < 0.72:
                msg = f"sshd[{pid}]: Unable to negotiate with {ip} port {port}: no matching key exchange method [preauth]"
            elif pick < 0.76:
                msg = f"sshd[{pid}]: Received disconnect from {ip} port {port}:11: Bye Bye [preauth]"
            elif pick < 0.80:
                msg = f"vsftpd[{pid}]: pam_unix(vsftpd:auth): authentication failure; {PAM_KV} rhost={ip}  user={user}"
            elif pick < 0.83:
                msg = f"su[{pid}]: FAILED SU (to root) {user} on pts/0"
            elif pick < 0.86:
                msg = f"sudo[{pid}]:    {user} : 3 incorrect password attempts ; TTY=pts/1 ; USER=root ; COMMAND=/bin/id"
            elif pick < 0.93:
                msg = f"CRON[{pid}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)"
            else:
                msg = f"systemd-logind[{pid}]: New session {i} of user {user}."
            fh.write(f"{stamp} bench.test {msg}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--keep", metavar="FILE", help="write the generated log here (and keep it)")
    parser.add_argument("--fail2ban-root", metavar="DIR", help="a fail2ban .deb unpacked with dpkg-deb -x (default: "
                        f"{UNPACKED_FAIL2BAN}, where scripts/install-system-deps.sh test unpacks it, when it is there)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = args.keep or os.path.join(scratch, "auth.log")
        started = time.perf_counter()
        generate(path, args.lines)
        size = os.path.getsize(path)
        print(f"generated {args.lines} lines ({size / 1e6:.0f} MB) in {time.perf_counter() - started:.1f} s")

        stats = SourceStats(path)
        clock = Clock(UTC, datetime(2024, 12, 31, tzinfo=UTC))
        started = time.perf_counter()
        with open_log(path) as stream:
            events = sum(1 for _ in parse_lines(read_blocks(stream, stats), path, clock, stats))
        took = time.perf_counter() - started
        print(f"parse layer (in-process, one pass): {stats.lines / took:,.0f} lines/s  ({events} events, {took:.2f} s)")

        with open(os.devnull, "w") as sink:
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "hostguard.cli", "logons", "parse", path], stdout=sink,
                                  stderr=subprocess.PIPE, check=True)
            took = time.perf_counter() - started
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(f"hostguard logons parse (command, JSON Lines out, {usable_cpus()} CPUs usable): "
              f"{args.lines / took:,.0f} lines/s  ({took:.2f} s), peak RSS {peak_kb / 1024:.0f} MB for a "
              f"{size / 1e6:.0f} MB file")
        del proc

        if not args.fail2ban_root and os.path.exists(os.path.join(UNPACKED_FAIL2BAN, "usr/bin/fail2ban-regex")):
            args.fail2ban_root = UNPACKED_FAIL2BAN
        if args.fail2ban_root:
            root = args.fail2ban_root
            argv = ["python3", os.path.join(root, "usr/bin/fail2ban-regex"), path,  # Debian's python3, as packaged
                    os.path.join(root, "etc/fail2ban/filter.d/sshd.conf")]
            env = {**os.environ, "PYTHONPATH": os.path.join(root, "usr/lib/python3/dist-packages")}
        elif shutil.which("fail2ban-regex"):
            argv, env = ["fail2ban-regex", path, "sshd"], dict(os.environ)
        else:
            print("fail2ban-regex: not installed (see --fail2ban-root) - no comparison figure")
            return
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
        f2b = time.perf_counter() - started
        print(f"fail2ban-regex FILE sshd: {args.lines / f2b:,.0f} lines/s  ({f2b:.2f} s); hostguard command is "
              f"{f2b / took:.1f}x as fast (issue 11's target: 10x)")


if __name__ == "__main__":
    main()
