"""How long the hidden-process sweep (rootkit.hidden_process) takes at this system's pid_max, and at 4194304.

The sweep asks for every pid from 1 to pid_max, so its cost grows with pid_max, not with the number of
processes. Measured as the check runs it (``pidfd_open``), beside the procfs lookup it replaced (opening
``/proc/<pid>/status``: the anchor, 0.141 s at 32768 and about 18 s at 4194304). The 4194304 sweep (systemd's
pid_max on 64-bit systems) is run for real: pids above this system's pid_max simply do not exist, which is
what most pids of a large pid_max are, so the cost is the one such a system pays; nothing is changed here.
Run as root: ``.venv/bin/python benchmarks/hidden_processes.py``.
"""

from __future__ import annotations

import time

from hostguard.host.kernel import PidSweep, lookup_is_process, lookup_range, pid_max

LARGE = 4194304
ANCHOR = {32768: 0.141, LARGE: 18.0}


def best(sweep: PidSweep, runs: int) -> tuple[float, int]:
    """The best wall time of ``runs`` complete sweeps, and how many hidden processes the last one found."""
    times = []
    hidden = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        result = sweep.run()
        times.append(time.perf_counter() - t0)
        assert result.complete
        hidden = len(result.hidden)
    return min(times), hidden


def main() -> None:
    top = pid_max()
    for limit, runs in ((top, 3), (LARGE, 1)):
        fast = PidSweep.live(limit)
        seconds, hidden = best(fast, runs)
        line = (f"hidden-process sweep ({fast.view}): pid_max {limit}: {seconds:.3f} s (best of {runs}), "
                f"{seconds / limit * 1e6:.2f} us per pid, {hidden} hidden")
        if limit == top:
            slow, _ = best(PidSweep(limit, "lookup", lookup_range, lookup_is_process), runs)
            line += f"; procfs lookup {slow:.3f} s"
        if limit in ANCHOR:
            line += f"; anchor (procfs lookup, before) {ANCHOR[limit]:g} s"
        print(line)


if __name__ == "__main__":
    main()
