"""Control groups for one fork server's sandboxes: CPU accounting, memory, process count, CPU share.

A sandbox's processes all join the group before the program runs, and its children stay in it
whatever they do (setsid, double fork, SIGCHLD ignored), so the group's counters cover every
process the program ever created, including children the kernel has already reaped:

  * CPU time: `cpuacct.usage` (v1) or `cpu.stat` usage_usec (v2; present without the cpu
    controller), read with one `pread` on a file held open (a few microseconds);
  * memory: `memory.limit_in_bytes` (+ memsw, swappiness 0) / `memory.max` of the whole tree,
    pages of the program's tmpfs scratch space included;
  * processes: `pids.max`;
  * CPU share: a CFS quota of one CPU (`cpu.cfs_quota_us` / `cpu.max`), so a program's tree cannot
    take more than one core from the other workers, and CPU used grows at most as fast as wall time.

A fork server runs one program at a time but forks the next sandboxes while the last one is
torn down, so it uses three groups in turn: a program's CPU is its group's counter's growth while
it runs, with neither neighbour's set-up nor teardown in it. The worker (outside the sandbox's
mount namespace)
creates the groups and reads them; the fork server keeps open `cgroup.procs` files into which
each sandbox writes itself before it drops privileges. Hosts without a writable cgroup
filesystem get `None` from `SandboxGroup.create` and the sandbox falls back to reading /proc.
"""
from __future__ import annotations

import os

PREFIX = "coderl-sandbox-"
ROOT = "/sys/fs/cgroup"


def _own_paths() -> dict[str, str]:
    """{controller or "" for v2: this process's cgroup path} from /proc/self/cgroup."""
    out = {}
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                for c in (ctrls.split(",") if ctrls else [""]):
                    out[c] = path
    except OSError:
        pass
    return out


def _v1_dir(controller: str, paths: dict[str, str]) -> str | None:
    if controller not in paths:
        return None
    for mount in (controller, f"cpu,{controller}", f"{controller},cpu", "cpu,cpuacct"):
        base = os.path.join(ROOT, mount)
        if os.path.isdir(base) and os.path.isfile(os.path.join(base, "cgroup.procs")):
            return os.path.join(base, paths[controller].lstrip("/"))
    return None


def _v2_dir(paths: dict[str, str]) -> str | None:
    if "" not in paths:
        return None
    for base in (os.path.join(ROOT, "unified"), ROOT):
        if os.path.isfile(os.path.join(base, "cgroup.controllers")):
            return os.path.join(base, paths[""].lstrip("/"))
    return None


def _remove_stale(parent: str) -> None:
    """Remove groups left by fork servers that died (their pid is in the name)."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if not name.startswith(PREFIX):
            continue
        try:
            os.kill(int(name[len(PREFIX):].split("-")[0]), 0)
        except ProcessLookupError:
            try:
                os.rmdir(os.path.join(parent, name))
            except OSError:
                pass
        except (ValueError, PermissionError):
            pass


def _write(path: str, value: str) -> bool:
    try:
        with open(path, "w") as f:
            f.write(value)
        return True
    except OSError:
        return False


class SandboxGroup:
    """The groups (one per hierarchy) holding one fork server's sandboxes."""

    def __init__(self, dirs: dict[str, str]):
        self.dirs = dirs  # {"cpu": counter file; "memory", "pids", "quota": group folder}
        self.kind = "v2" if dirs.get("cpu", "").endswith("/cpu.stat") else "v1"
        self._cpu_fd = None
        cpu = dirs.get("cpu")
        if cpu:
            self._cpu_fd = os.open(cpu, os.O_RDONLY | os.O_CLOEXEC)

    @classmethod
    def create(cls, name: str, memory_bytes: int, max_pids: int, cpus: float = 1.0
               ) -> "SandboxGroup | None":
        """Make the groups named `name` (PREFIX + a pid) and set their limits; None where no CPU
        accounting group could be made (not root, read-only or missing cgroup filesystem)."""
        paths = _own_paths()
        made: dict[str, str] = {}
        folders: list[str] = []

        def make(parent: str | None) -> str | None:
            if parent is None or not os.path.isdir(parent):
                return None
            _remove_stale(parent)
            group = os.path.join(parent, name)
            try:
                os.makedirs(group, exist_ok=True)
            except OSError:
                return None
            folders.append(group)
            return group

        acct = make(_v1_dir("cpuacct", paths))
        if acct and os.path.isfile(os.path.join(acct, "cpuacct.usage")):
            made["cpu"] = os.path.join(acct, "cpuacct.usage")
        else:
            v2 = make(_v2_dir(paths))
            if v2 and os.path.isfile(os.path.join(v2, "cpu.stat")):
                made["cpu"] = os.path.join(v2, "cpu.stat")
                made["v2"] = v2
        if "cpu" not in made:
            for g in folders:
                try:
                    os.rmdir(g)
                except OSError:
                    pass
            return None
        mem = made.get("v2") if made.get("v2") and os.path.isfile(
            os.path.join(made["v2"], "memory.max")) else make(_v1_dir("memory", paths))
        if mem:
            ok = _write(os.path.join(mem, "memory.max"), str(memory_bytes)) if mem == made.get(
                "v2") else _write(os.path.join(mem, "memory.limit_in_bytes"), str(memory_bytes))
            if ok:
                made["memory"] = mem
                _write(os.path.join(mem, "memory.memsw.limit_in_bytes"), str(memory_bytes))
                _write(os.path.join(mem, "memory.swap.max"), "0")
                _write(os.path.join(mem, "memory.swappiness"), "0")  # v1 without memsw
        pids = made.get("v2") if made.get("v2") and os.path.isfile(
            os.path.join(made["v2"], "pids.max")) else make(_v1_dir("pids", paths))
        if pids and _write(os.path.join(pids, "pids.max"), str(max_pids)):
            made["pids"] = pids
        quota = made.get("v2") if made.get("v2") and os.path.isfile(
            os.path.join(made["v2"], "cpu.max")) else make(_v1_dir("cpu", paths))
        if quota:
            period = 100_000
            if quota == made.get("v2"):
                ok = _write(os.path.join(quota, "cpu.max"), f"{int(cpus * period)} {period}")
            else:
                ok = (_write(os.path.join(quota, "cpu.cfs_period_us"), str(period))
                      and _write(os.path.join(quota, "cpu.cfs_quota_us"), str(int(cpus * period))))
            if ok:
                made["quota"] = quota
        made.pop("v2", None)
        group = cls(made)
        group._folders = sorted(set(folders))
        group.cpus = cpus if "quota" in made else float(os.cpu_count() or 1)
        return group

    def procs_files(self) -> list[str]:
        """The `cgroup.procs` files a sandbox writes its pid into (one per hierarchy)."""
        return [os.path.join(g, "cgroup.procs") for g in self._folders]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used by every process that has been in the group."""
        data = os.pread(self._cpu_fd, 4096, 0)
        if self.kind == "v1":
            return int(data) / 1e9
        for line in data.split(b"\n"):
            if line.startswith(b"usage_usec "):
                return int(line.split()[1]) / 1e6
        raise OSError("cpu.stat without usage_usec")

    def remove(self) -> None:
        """Remove the groups (every sandbox has ended)."""
        if self._cpu_fd is not None:
            os.close(self._cpu_fd)
            self._cpu_fd = None
        for g in reversed(self._folders):
            try:
                os.rmdir(g)
            except OSError:
                pass
