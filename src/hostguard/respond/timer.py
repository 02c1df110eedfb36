"""The timed rollback of live SSH and firewall fixes: undone by itself unless the owner confirms.

A re-scan cannot see that the owner, connected from far away, just locked themselves out: only the owner
logging in again can. So such a fix arms a timer that runs ``hostguard fix --undo ID`` later, and the owner
cancels it with ``hostguard fix --confirm ID`` from a *new* session (the new login is the proof). Where
systemd runs (PID 1), the timer is a transient unit (``systemd-run --on-active=``), which survives the SSH
session that armed it; elsewhere a detached process (double fork, its own session) sleeps, then runs the
undo; its pid is recorded, and cancelling checks that the pid still runs that very undo before killing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import Any

SLEEPER = "import os, sys, time; time.sleep(float(sys.argv[1])); os.execv(sys.argv[2], sys.argv[2:])"


def systemd_runs() -> bool:
    """Whether systemd is this machine's init (transient timers are possible)."""
    return os.path.isdir("/run/systemd/system")


def undo_argv(state_dir: str, fix_id: str, config: str | None) -> list[str]:
    """The command the timer runs: hostguard undoing the fix, as a timed rollback."""
    return [sys.executable, "-m", "hostguard.cli", *(["--config", config] if config else []),
            "--state", state_dir, "fix", "--undo", fix_id, "--timer"]


def arm(state_dir: str, fix_id: str, seconds: int, config: str | None, use_systemd: bool) -> dict[str, Any]:
    """Arm the rollback; return what :func:`cancel` needs (recorded in the fix's manifest)."""
    argv = undo_argv(state_dir, fix_id, config)
    if use_systemd:
        unit = f"hostguard-rollback-{fix_id}"
        done = subprocess.run(["systemd-run", f"--unit={unit}", f"--on-active={seconds}s", "--", *argv],
                              capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise OSError(f"systemd-run failed: {done.stderr.strip()}")
        return {"kind": "systemd", "unit": unit, "seconds": seconds}
    return {"kind": "process", "pid": _detach([sys.executable, "-c", SLEEPER, str(seconds), *argv]),
            "seconds": seconds}


def _detach(argv: list[str]) -> int:
    """Start ``argv`` fully detached (double fork, setsid, stdio on /dev/null); return its pid."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        try:
            os.close(read_end)
            os.setsid()
            grandchild = os.fork()
            if grandchild:
                os.write(write_end, str(grandchild).encode())
                os._exit(0)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.closerange(3, 1024)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    os.close(write_end)
    os.waitpid(child, 0)
    with os.fdopen(read_end, "rb") as pipe:
        text = pipe.read().decode()
    if not text.isdigit():
        raise OSError("the rollback process could not be started")
    return int(text)


def pending(timer: dict[str, Any] | None, fix_id: str) -> bool:
    """Whether the armed rollback is still waiting."""
    if not timer:
        return False
    if timer["kind"] == "systemd":
        done = subprocess.run(["systemctl", "is-active", "--quiet", f"{timer['unit']}.timer"], check=False)
        return done.returncode == 0
    return _our_process(int(timer["pid"]), fix_id)


def _our_process(pid: int, fix_id: str) -> bool:
    """The pid still runs the sleeper for this fix (a reused pid is someone else's process)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return False
    return fix_id.encode() in args and SLEEPER.encode() in args


def cancel(timer: dict[str, Any] | None, fix_id: str) -> str:
    """Stop the armed rollback; say what was done."""
    if not timer:
        return "no rollback was armed"
    if timer["kind"] == "systemd":
        subprocess.run(["systemctl", "stop", f"{timer['unit']}.timer"], capture_output=True, check=False)
        return f"timer {timer['unit']} stopped"
    pid = int(timer["pid"])
    if not _our_process(pid, fix_id):
        return f"rollback process {pid} had already ended"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    return f"rollback process {pid} stopped"
