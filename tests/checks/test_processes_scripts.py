"""processes.deleted_script on real interpreters the test starts, and how a command line names its script.

Hits: ``bash job.sh`` started with a relative name and deleted while it runs (bash keeps it open on fd 255:
the finding says where to copy it from), ``python3 /tmp/…/job.py`` deleted (python keeps nothing open),
both high (a temp dir); a script in /mnt/jobs (a tmpfs in a private mount namespace) deleted: medium.
Near misses: ``python3 -c``, ``python3 -m`` of a module whose file is then deleted, a script still there,
``bash -i``, a relative bash script that changed directory, a relative python script that changed
directory (found again through the ``$PWD`` it started with), and a script replaced at its path (an edit).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostguard.findings import Finding
from hostguard.host.base import LiveHost
from hostguard.host.processes import script_argument, script_interpreters
from tests.checks.test_processes import Zoo, children, cmdline, wait_until
from tests.conftest import need_root, need_tool, run_one

CHECK = "processes.deleted_script"
SLEEPY_SH = "sleep 30\nexit 0\n"
# Python reads its script at start-up and closes it: the marker file says it is past that point.
SLEEPY_PY = "import os, time\nopen(os.path.abspath(__file__) + '.ready', 'w').close()\ntime.sleep(30)\n"
CHDIR_PY = "import os, time\nopen(os.path.abspath(__file__) + '.ready', 'w').close()\nos.chdir('/')\ntime.sleep(30)\n"


def by_pid(findings: list[Finding]) -> dict[int, Finding]:
    return {int(p["pid"]): f for f in findings for p in f.evidence["processes"]}


def has_fd(pid: int, fd: int) -> bool:
    return os.path.lexists(f"/proc/{pid}/fd/{fd}")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zoo]:
    need_tool("bash", "sleep")
    z = Zoo(tmp_path_factory.mktemp("scripts"))
    py = os.path.realpath(sys.executable)
    try:
        work = z.tmp / "work"
        work.mkdir()
        files = {"job.sh": SLEEPY_SH, "job.py": SLEEPY_PY, "stay.sh": SLEEPY_SH, "away.sh": "cd /\n" + SLEEPY_SH,
                 "away.py": CHDIR_PY, "edited.sh": SLEEPY_SH, "hgmod.py": SLEEPY_PY}
        for name, text in files.items():
            (work / name).write_text(text)
        env = {**os.environ, "PWD": str(work)}
        z.start("bash_job", ["bash", "job.sh"], cwd=work)
        z.start("python_job", [py, str(work / "job.py")])
        z.start("present", ["bash", str(work / "stay.sh")])
        z.start("away_sh", ["bash", "away.sh"], cwd=work)
        z.start("away_py", [py, "away.py"], cwd=work, env=env)
        z.start("edited", ["bash", str(work / "edited.sh")])
        z.start("inline", [py, "-c", SLEEPY_PY])
        z.start("module", [py, "-m", "hgmod"], cwd=work, env={**env, "PYTHONPATH": str(work)})
        z.start("interactive", ["bash", "-i"], stdin=-1, stdout=-3, stderr=-3)
        for role in ("bash_job", "present", "away_sh", "edited"):
            pid = z.pids[role]
            wait_until(f"{role} runs its sleep", lambda pid=pid: has_fd(pid, 255) and any(
                cmdline(c).startswith(b"sleep") for c in children(pid)))
        for name in ("job.py", "away.py", "hgmod.py"):
            wait_until(f"{name} runs", (work / f"{name}.ready").exists)
        for name in ("job.sh", "job.py", "hgmod.py"):
            (work / name).unlink()
        (work / "edited.sh").unlink()
        (work / "edited.sh").write_text("# edited\n" + SLEEPY_SH)
        yield z
    finally:
        z.stop()


def test_deleted_script_live(zoo: Zoo) -> None:
    findings, skipped = run_one(CHECK, LiveHost())
    assert not skipped
    hits = by_pid(findings)
    work = zoo.tmp / "work"
    bash = hits[zoo.pids["bash_job"]]
    assert bash.evidence["script"] == str(work / "job.sh") and bash.evidence["script_argument"] == "job.sh"
    assert bash.evidence["script_fd"] == 255 and bash.severity == "high" and bash.evidence["location"] == "/tmp"
    assert f"/proc/{zoo.pids['bash_job']}/fd/255" in (bash.remediation.manual or "")
    assert bash.target["script"] == str(work / "job.sh")
    [step] = bash.remediation.steps
    assert dict(step.args)["pid"] == str(zoo.pids["bash_job"])  # type: ignore[union-attr]
    python = hits[zoo.pids["python_job"]]
    assert python.evidence["script"] == str(work / "job.py") and python.evidence["script_fd"] is None
    assert python.severity == "high"
    for quiet in ("present", "away_sh", "away_py", "edited", "inline", "module", "interactive"):
        assert zoo.pids[quiet] not in hits, hits[zoo.pids[quiet]].title
    assert os.getpid() not in hits


def test_deleted_script_outside_temp_dirs_is_medium(tmp_path: Path) -> None:
    """/mnt/jobs/run.sh on a tmpfs in a private mount namespace: deleted inside the namespace once bash has it
    open; the check looks through the process's own root, so it sees the namespace's /mnt."""
    need_root("a private mount namespace")
    need_tool("unshare", "mount", "bash")
    script = ("set -e; mount -t tmpfs none /mnt; mkdir /mnt/jobs /mnt/keep; "
              f"printf '{SLEEPY_SH}' > /mnt/jobs/run.sh; printf '{SLEEPY_SH}' > /mnt/keep/run.sh; "
              "bash /mnt/jobs/run.sh & j=$!; bash /mnt/keep/run.sh & "
              "while [ ! -e /proc/$j/fd/255 ]; do sleep 0.01; done; rm /mnt/jobs/run.sh; wait")
    z = Zoo(tmp_path)
    try:
        ns = z.start("ns", ["unshare", "--mount", "--propagation", "private", "sh", "-c", script])
        wait_until("both scripts run, one deleted", lambda: len(children(ns)) == 2 and all(
            has_fd(c, 255) for c in children(ns)) and any(
            os.readlink(f"/proc/{c}/fd/255").endswith(" (deleted)") for c in children(ns)))
        pids = {os.readlink(f"/proc/{c}/fd/255"): c for c in children(ns)}
        hits = by_pid(run_one(CHECK, LiveHost())[0])
    finally:
        z.stop()
    f = hits[pids["/mnt/jobs/run.sh (deleted)"]]
    assert f.severity == "medium" and f.evidence["location"] == "/mnt/jobs"
    assert pids["/mnt/keep/run.sh"] not in hits


@pytest.mark.parametrize("argv, script", [
    (["bash", "job.sh", "arg"], "job.sh"),
    (["bash", "-e", "-o", "pipefail", "/srv/x.sh"], "/srv/x.sh"),
    (["bash", "-ec", "echo hi"], None),
    (["bash", "-s", "job"], None),
    (["bash", "-i"], None),
    (["bash", "/dev/fd/63"], None),
    (["python3", "-u", "-W", "ignore", "app.py", "--port", "1"], "app.py"),
    (["python3", "-m", "http.server"], None),
    (["python3", "-c", "print(1)", "x.py"], None),
    (["python3", "-"], None),
    (["perl", "-ne", "print", "f"], None),
    (["perl", "-I", "lib", "run.pl"], "run.pl"),
    (["php", "-d", "memory_limit=1G", "-f", "cron.php"], "cron.php"),
    (["php", "-r", "echo 1;"], None),
    (["node", "--require", "dotenv/config", "server.js"], "server.js"),
    (["node", "-e", "1"], None),
    (["bash", "--", "run.sh"], "run.sh"),
])
def test_script_argument(argv: list[str], script: str | None) -> None:
    from hostguard.host.processes import interpreter_of

    interp = interpreter_of((), f"/usr/bin/{argv[0]}", script_interpreters())
    assert interp is not None
    assert script_argument(tuple(argv), interp) == script


@given(st.lists(st.text(max_size=12), max_size=8))
def test_script_argument_is_one_of_the_arguments(args: list[str]) -> None:
    """Whatever the command line, the script is None or one of its arguments, never argv[0]; no error."""
    for interp in script_interpreters():
        found = script_argument(("x", *args), interp)
        assert found is None or (found in args and found not in ("", "-"))


@given(st.dictionaries(st.binary(min_size=1, max_size=8).filter(lambda b: b"=" not in b and b"\0" not in b),
                       st.binary(max_size=16).filter(lambda b: b"\0" not in b), max_size=6),
       st.binary(max_size=8))
def test_environ_reading(env: dict[bytes, bytes], junk: bytes) -> None:
    """/proc/PID/environ as the kernel writes it (NUL-separated NAME=value, maybe cut short, maybe junk
    without '='): $PWD is its value when set, None otherwise; never an error."""
    import tempfile

    from hostguard.host.base import _environ_value

    data = b"\0".join([junk.replace(b"=", b""), *(k + b"=" + v for k, v in env.items())])
    with tempfile.NamedTemporaryFile() as fh:
        fh.write(data)
        fh.flush()
        got = _environ_value(fh.name, b"PWD")
    assert got == (os.fsdecode(env[b"PWD"]) if b"PWD" in env else None)
