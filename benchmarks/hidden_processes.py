"""How long the hidden-process sweep (rootkit.hidden_process) takes at this system's pid_max.

The sweep looks up every pid from 1 to pid_max, so its cost grows with pid_max, not with the number of
processes: the figure is printed per pid too, to scale it to other systems (systemd sets 4194304).
Run as root: ``.venv/bin/python benchmarks/hidden_processes.py``.
"""

from __future__ import annotations

import time

from hostguard.checks.rootkit import pid_max, sweep


def main() -> None:
    top = pid_max()
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        hidden = sweep()
        runs.append(time.perf_counter() - t0)
    best = min(runs)
    per_pid = best / top
    print(f"hidden-process sweep: pid_max {top}: {best:.3f} s (best of 3), {per_pid * 1e6:.2f} us per pid, "
          f"{len(hidden)} hidden; at pid_max 4194304 that is about {per_pid * 4194304:.1f} s")


if __name__ == "__main__":
    main()
