"""The real dockerd (Debian's docker.io, unpacked by scripts/unpack-debs.sh, never installed),
run inside a test's server namespace so hostguard is tested on the iptables rules Docker itself writes.

dockerd runs under ``ip netns exec`` (its bridge, iptables rules and published ports exist only in that
namespace) and in a private mount namespace: its mounts, a tmpfs over /run (containerd's shim sockets,
/run/docker/plugins) and the cgroup hierarchies that ``ip netns exec``'s fresh /sys hides are gone when
its processes are. Everything else it writes is under the test's temporary directory (data and exec
roots, its socket, its trust key via daemon.json). Containers get their own cgroup parent, removed at the
end. Nothing is left on this machine but the unpacked cache.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import need_root, need_tool
from tests.netns import Pair

DOCKER_CACHE = Path(os.environ.get("HOSTGUARD_DOCKER_CACHE", "/var/cache/hostguard-tests/docker"))
CGROUP_ROOT = "/sys/fs/cgroup"
BUSYBOX_APPLETS = ("sh", "httpd", "sleep")


def need_docker() -> Path:
    """Skip with the reason when the unpacked Docker (or what running it needs) is missing."""
    need_root("dockerd in a network namespace")
    need_tool("ip", "unshare", "iptables")
    for rel in ("usr/sbin/dockerd", "usr/bin/containerd", "usr/sbin/runc", "usr/sbin/docker-proxy",
                "usr/bin/docker", "bin/busybox"):
        if not os.access(DOCKER_CACHE / rel, os.X_OK):
            pytest.skip(reason=f"{DOCKER_CACHE / rel} is missing: Docker is not unpacked for the tests "
                               "(scripts/unpack-debs.sh, run by scripts/install-system-deps.sh test)")
    return DOCKER_CACHE


def _cgroup_mounts() -> list[tuple[str, str, str]]:
    """(fstype, mount point, options) of every mount at or under /sys/fs/cgroup, in mount order."""
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, where, fstype, options, *_ = line.split()
        if where == CGROUP_ROOT or where.startswith(CGROUP_ROOT + "/"):
            out.append((fstype, where, options))
    return out


def _setup_script() -> str:
    """Shell run (as root, in the private mount namespace) before exec'ing dockerd: /run on a tmpfs, and
    this host's cgroup mounts again over the fresh /sys that ``ip netns exec`` mounted."""
    lines = ["set -e", "mount -t tmpfs hostguard-run /run"]
    for fstype, where, options in _cgroup_mounts():
        lines.append(f"mkdir -p {shlex.quote(where)}")
        lines.append(f"mount -t {shlex.quote(fstype)} -o {shlex.quote(options)} {shlex.quote(fstype)} "
                     f"{shlex.quote(where)}")
    lines.append('exec "$@"')
    return "\n".join(lines)


@dataclass
class Dockerd:
    """A running dockerd in ``pair.server``; ``docker(...)`` is its CLI."""

    pair: Pair
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    mount_ns: str = ""
    cgroup_parent: str = ""
    containers: list[str] = field(default_factory=list)

    @property
    def socket(self) -> Path:
        return self.workdir / "docker.sock"

    def env(self) -> dict[str, str]:
        path = f"{DOCKER_CACHE}/usr/sbin:{DOCKER_CACHE}/usr/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        return {"PATH": path, "DOCKER_CONFIG": str(self.workdir / "cli"), "HOME": str(self.workdir)}

    def docker(self, *args: str) -> str:
        """Run the docker CLI against this daemon; its output (fails the test when it fails)."""
        r = subprocess.run([str(DOCKER_CACHE / "usr/bin/docker"), "-H", f"unix://{self.socket}", *args],
                           capture_output=True, text=True, env=self.env(), timeout=60)
        assert r.returncode == 0, (args, r.stderr)
        return r.stdout.strip()

    def busybox_image(self, name: str = "hostguard-busybox:test") -> str:
        """An image made offline: Debian's static busybox and a few applet links, ``docker import``ed."""
        tar = self.workdir / "busybox.tar"
        with tarfile.open(tar, "w") as t:
            info = t.gettarinfo(str(DOCKER_CACHE / "bin/busybox"), "bin/busybox")
            info.uid = info.gid = 0
            with open(DOCKER_CACHE / "bin/busybox", "rb") as f:
                t.addfile(info, f)
            for applet in BUSYBOX_APPLETS:
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                t.addfile(link)
        self.docker("import", str(tar), name)
        return name

    def run(self, *args: str) -> str:
        """``docker run -d ARGS``; the container is removed at the end. Returns its id."""
        cid = self.docker("run", "-d", *args)
        self.containers.append(cid)
        return cid

    def address(self, cid: str) -> str:
        """The container's address on Docker's bridge."""
        return self.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", cid)

    def log(self) -> str:
        path = self.workdir / "dockerd.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def _wait_ready(d: Dockerd, deadline: float) -> None:
    while time.time() < deadline:
        assert d.proc is not None
        if d.proc.poll() is not None:
            pytest.fail(f"dockerd exited ({d.proc.returncode}): {d.log()}")
        r = subprocess.run([str(DOCKER_CACHE / "usr/bin/docker"), "-H", f"unix://{d.socket}", "version"],
                           capture_output=True, env=d.env())
        if r.returncode == 0:
            return
        time.sleep(0.2)
    pytest.fail(f"dockerd did not answer within its deadline: {d.log()}")


def _processes_in(mount_ns: str) -> list[int]:
    """Pids of processes in the mount namespace dockerd ran in (its containerd, shims, proxies)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns/mnt") == mount_ns:
                    pids.append(int(entry.name))
    return pids


def _remove_cgroups(parent: str) -> None:
    """The containers' cgroup parent in every hierarchy (deepest first; they are empty by now)."""
    for _, where, _ in _cgroup_mounts():
        top = Path(where) / parent.lstrip("/")
        if not top.is_dir():
            continue
        for sub in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                sub.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def _private_mount_ns(pid: int) -> str:
    """dockerd's mount namespace (exec keeps the pid), once it is surely not this process's own: only
    processes in it are killed at the end."""
    with contextlib.suppress(OSError):
        ns = os.readlink(f"/proc/{pid}/ns/mnt")
        if ns != os.readlink("/proc/self/ns/mnt") and "dockerd" in Path(f"/proc/{pid}/comm").read_text():
            return ns
    return ""


def _stop(d: Dockerd) -> None:
    if d.proc is not None and not d.mount_ns:
        d.mount_ns = _private_mount_ns(d.proc.pid)
    for cid in d.containers:  # SIGKILL now: busybox as pid 1 ignores dockerd's SIGTERM for 10 s
        subprocess.run([str(DOCKER_CACHE / "usr/bin/docker"), "-H", f"unix://{d.socket}", "rm", "-f", cid],
                       capture_output=True, env=d.env(), timeout=30)
    if d.proc is not None and d.proc.poll() is None:
        d.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            d.proc.wait(timeout=15)
    if d.mount_ns:
        for _ in range(50):
            left = _processes_in(d.mount_ns)
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
    if d.proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            d.proc.wait(timeout=5)
    if d.cgroup_parent:
        _remove_cgroups(d.cgroup_parent)


@contextlib.contextmanager
def dockerd(pair: Pair, bridge_cidr: str = "203.0.113.1/24", ip6tables: bool = False,
            userland_proxy: bool = True) -> Iterator[Dockerd]:
    """Start Debian's dockerd in ``pair.server`` (iptables on, storage driver vfs, bridge ``bridge_cidr``),
    yield it, and stop it with everything it started. ``userland_proxy=False`` is dockerd's
    ``--userland-proxy=false``: no docker-proxy, NAT rules for this host's own connections instead.

    Its files go to a short directory under /tmp (removed at the end): containerd's sockets live under
    it and a unix socket path is limited to 104 characters, more than pytest's tmp_path leaves.
    """
    need_docker()
    workdir = Path(tempfile.mkdtemp(prefix="hgdocker", dir="/tmp"))
    d = Dockerd(pair, workdir, cgroup_parent=f"/hostguard-test-{pair.server}")
    (workdir / "daemon.json").write_text(json.dumps({"deprecated-key-path": str(workdir / "key.json")}))
    argv = ["dockerd", "--config-file", str(workdir / "daemon.json"),
            "--data-root", str(workdir / "data"), "--exec-root", str(workdir / "x"),
            "--pidfile", str(workdir / "docker.pid"), "-H", f"unix://{d.socket}",
            "--storage-driver", "vfs", "--bip", bridge_cidr, "--cgroup-parent", d.cgroup_parent,
            "--iptables=true", f"--ip6tables={'true' if ip6tables else 'false'}",
            f"--userland-proxy={'true' if userland_proxy else 'false'}", "--log-level", "warn"]
    log = open(workdir / "dockerd.log", "wb")  # noqa: SIM115 - closed below, after dockerd stops
    try:
        d.proc = subprocess.Popen(
            ["ip", "netns", "exec", pair.server, "unshare", "--mount", "--propagation", "private",
             "sh", "-c", _setup_script(), "sh", *argv],
            stdout=log, stderr=subprocess.STDOUT, env=d.env(), start_new_session=True)
        _wait_ready(d, time.time() + 30)
        d.mount_ns = _private_mount_ns(d.proc.pid)
        yield d
    finally:
        _stop(d)
        log.close()
        if d.proc is not None and d.proc.poll() is not None and not _processes_in(d.mount_ns or "-"):
            shutil.rmtree(workdir, ignore_errors=True)
