"""Isolation of one program: a fork server (zygote) that starts each sandbox warm, and the limits.

Process tree (one per pool worker):

    worker (judge; holds the tests; minimal environment, own session, no terminal)
      └─ zygote (forked before any test is seen; modules pre-imported; own network and mount
         namespace, pivoted into the allow-listed root of `rootfs`)
           └─ sandbox P, one per program: PID 1 of a fresh PID namespace, in fresh IPC and mount
              namespaces, an unprivileged uid of its own, a seccomp filter. The fork server keeps
              the next one forked and isolated ahead of need (a spare, waiting for its first
              request) and reaps ended ones in the background, so neither the fork nor the
              teardown is on the worker's path.

Threat model: the program is adversarial (RL optimises against the verdict). It must not pass
without solving the problem, harm or observe the host, or carry state to later programs. What
is defended, and how (mode "namespaces", used when running as root):

  * Files: the filesystem is an allow-list (`rootfs`): shared libraries, the interpreter and its
    standard library, the allowed packages, read-only; /tmp (the cwd and HOME; /var/tmp and
    /dev/shm point to it) is a tmpfs of the program's own mount namespace, gone with it. No
    checkout, dataset, home folder, host /tmp or /sys exists in its view, whichever API started
    the pool. Writes elsewhere fail (read-only mounts, and everything is owned by other uids).
  * Processes: P is PID 1 of its own PID namespace with its own /proc: it sees only its own
    processes, and killing P makes the kernel kill every process in it (setsid, double forks).
  * Terminal and session: the worker starts in a new session without a controlling terminal and
    every sandbox calls setsid(); /dev holds no tty; fds 0/1 are what `Zygote.spawn(stdio=...)`
    passes (the judge's memfds for a standard-input test run as a process), else /dev/null, as
    fd 2 always is; nothing else of the harness stays open; TIOCSTI is refused by seccomp.
  * Secrets: the worker is started with a fixed minimal environment (nothing of the launcher's,
    so nothing to recover from its memory or /proc/self/environ), and each sandbox joins a fresh
    anonymous session keyring (keyring calls are then refused by seccomp).
  * IPC: System V shared memory, semaphores, message queues and POSIX queues live in the
    sandbox's IPC namespace and die with it; /dev/shm is its private tmpfs.
  * Network: the zygote's network namespace (made once per fork server) holds only a down
    loopback. Programs run one at a time, and none meets the next through that namespace
    (abstract sockets) or anything else shared: the next program gets
    its sandbox only once the previous one's PID 1 has been reported exited, which the kernel
    does after every other process of its PID namespace is gone and its own files are closed.
  * Privileges: setgroups/setresgid/setresuid to a uid of its own, no_new_privs, then a seccomp
    filter (`seccomp`) refusing namespace creation, mounts, keyrings, ptrace, bpf, perf,
    userfaultfd, io_uring and other kernel surface no judged program needs.
  * CPU: a cgroup per fork server (`cgroups`) counts the CPU of every process the program ever
    had, reaped children included, and caps it at one CPU; the worker checks it while waiting and
    when each reply arrives. Wall time is one budget per program (see `ProgramRun`).
  * Memory and counts: RLIMIT_AS per process, the cgroup's memory limit for the whole tree (its
    tmpfs scratch included), pids.max and RLIMIT_NPROC, RLIMIT_FSIZE/NOFILE, no core files,
    oom_score_adj 1000.
  * Clean-up: nothing to delete — the scratch tmpfs, IPC objects and /proc go away with the
    program's namespaces when its last process has died.

Fallback (mode "basic", when not root or namespaces are refused): a fresh temp cwd, the rlimits,
the seccomp filter, setsid and the minimal environment, but no filesystem, IPC, PID or network
isolation, and CPU read from /proc (children reaped by the kernel are not counted). The zygote is
a child subreaper and kills every process reparented to it after each program. The pool reports
the mode (`ExecutionPool.isolation`) and warns when it is "basic": use it on development
machines only.
"""
from __future__ import annotations

import dataclasses
import gc
import json
import os
import random
import resource
import select
import signal
import socket
import stat
import struct
import tempfile
import time
from pathlib import Path

from coderl_jax.execution import rootfs, seccomp, syscalls as sc

SCRATCH = rootfs.SCRATCH
UID_BASE = 1 << 30
# The whole environment of a sandbox (HOME is its scratch folder).
SANDBOX_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-program resource limits."""

    memory_mb: int = 2048  # address space on top of the pre-imported interpreter
    nproc: int = 32  # processes/threads the program may have at once
    nofile: int = 64  # open file descriptors
    fsize_mb: int = 16  # largest file it may write
    scratch_mb: int = 64  # its /tmp (counted in its memory too)
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
    """CPU time of a process and all its live descendants (the fallback without cgroups)."""
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


def minimal_environment() -> dict[str, str]:
    """The whole environment of a pool worker (and so of every sandbox): fixed values and the
    paths the interpreter needs to find this package, nothing of the launcher's."""
    path = [str(project_root())] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                    if p]
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": os.pathsep.join(path),
            "JAX_PLATFORMS": "cpu", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1"}


# ------------------------------------------------------------------------------------------------
# Zygote side (runs in the fork server process)
# ------------------------------------------------------------------------------------------------
def _enter_program_namespaces(limits: Limits, under_scratch: list[str]) -> None:
    """In the sandbox (PID 1 of its PID namespace, still root): private IPC, cgroup and mount
    namespaces, its own /proc and scratch tmpfs (with any interpreter path under /tmp bound
    again inside it)."""
    sc.unshare(sc.CLONE_NEWNS | sc.CLONE_NEWIPC | sc.CLONE_NEWCGROUP)
    sc.mount("proc", "/proc", "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    rootfs.mount_scratch(f"size={limits.scratch_mb}m,nr_inodes=16384,mode=1777", under_scratch)


def _sandbox_child(fd: int, uid: int | None, limits: Limits, namespaces: bool,
                   cwd: str, base_vm: int, cgroup_fds: list[int],
                   under_scratch: list[str] = (), reseed: bool = False) -> None:
    """Becomes the sandbox: namespaces, limits, fds, privileges, then the runtime (which waits
    for its first request, and takes the program's standard input and output from it when it
    carries them). Never returns."""
    try:
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        sc.set_name("coderl-sandbox")
        gc.freeze()  # the fork server's objects are none of the program's collections' business
        gc.enable()  # (the fork server runs without automatic collection)
        for cg in cgroup_fds:  # CPU, memory and pids of the whole process tree
            os.write(cg, b"0")
        if namespaces:
            _enter_program_namespaces(limits, list(under_scratch))
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(null, target)
        os.dup2(fd, 3, inheritable=False)
        os.closerange(4, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
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
            adj = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
            try:
                os.write(adj, b"1000")
            finally:
                os.close(adj)
        except OSError:
            pass
        if uid is not None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        try:
            sc.join_new_session_keyring()
        except OSError:
            pass
        if not namespaces:  # (the rest of the environment, no_new_privs, umask: the fork server's)
            os.environ["HOME"] = cwd
        if reseed:
            random.seed()  # as os.fork would have
        if seccomp.available():
            seccomp.install()
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


def _kill_children(exclude: set) -> None:
    """Kill and reap every child of this process but those in `exclude` (orphans reparented
    to us)."""
    path = f"/proc/self/task/{os.getpid()}/children"
    for _ in range(1000):
        try:
            with open(path) as f:
                pids = [int(p) for p in f.read().split() if int(p) not in exclude]
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


def remove_tree(path: str) -> None:
    """Delete a folder tree without recursion (a program may leave folders nested thousands
    deep) and without following links; errors are ignored."""
    stack = [(path, False)]
    while stack:
        p, expanded = stack.pop()
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            try:
                os.unlink(p)
            except OSError:
                pass
            continue
        if expanded:
            try:
                os.rmdir(p)
            except OSError:
                pass
            continue
        stack.append((p, True))
        try:
            os.chmod(p, 0o700)
            stack += [(e.path, False) for e in os.scandir(p)]
        except OSError:
            pass


SCRATCH_PREFIX = "coderl-sandbox-"  # + the worker's pid + "-": mode "basic" sandbox folders


def remove_stale_scratch(tmp: str | None = None) -> None:
    """Remove the mode "basic" sandbox folders of workers that no longer exist (killed before
    `Zygote.close` could remove them; their pid is in the name)."""
    tmp = tmp or tempfile.gettempdir()
    try:
        names = os.listdir(tmp)
    except OSError:
        return
    for name in names:
        owner = name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        if not name.startswith(SCRATCH_PREFIX) or not owner.isdigit():
            continue
        try:
            os.kill(int(owner), 0)
        except ProcessLookupError:
            remove_tree(os.path.join(tmp, name))
        except (OSError, OverflowError):
            pass


# zygote -> worker: kind (b"s" a sandbox, b"x" an exit), sandbox number, pid, slot or exit code.
# Sandboxes are named by number, not pid: pids are reused, and exits arrive asynchronously.
_MSG = struct.Struct(">ciii")


class _Spare:
    """A sandbox forked ahead of need, set up and waiting for its first request."""

    def __init__(self, sid: int, pid: int, pidfd: int, sock: socket.socket, slot: int,
                 cwd: str | None):
        self.sid, self.pid, self.pidfd, self.sock, self.slot, self.cwd = (
            sid, pid, pidfd, sock, slot, cwd)


def zygote_main(sock: socket.socket, namespaces: bool, cgroup_procs: list[list[str]],
                packages=rootfs.DEFAULT_PACKAGES, scratch: str | None = None) -> None:
    """The fork server: keeps one sandbox forked ahead (a spare, already isolated and waiting),
    hands it to the worker on request with a pidfd (no pid reuse) and its socket, forks the next
    one, and reaps sandboxes as they end, reporting each exit status. Sandboxes take the cgroups
    (`cgroup_procs[slot]`) in turn, so a program's CPU counter holds neither the previous
    program's teardown nor the next one's set-up. In mode "basic" each sandbox's cwd is a fresh
    folder in `scratch` (the worker's `Zygote.scratch`), removed when the sandbox is reaped or this
    server exits."""
    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
    sc.set_name("coderl-forksrv")
    os.setsid()
    cgroup_fds = [[os.open(p, os.O_WRONLY | os.O_CLOEXEC) for p in procs]
                  for procs in cgroup_procs] or [[]]
    from coderl_jax.execution import runtime

    try:  # an optimisation only: a failure must not keep the fork server from serving
        runtime.warm_up()
    except Exception:  # noqa: BLE001
        pass
    gc.collect()
    gc.freeze()  # pre-imported objects: never traversed by a sandbox's GC (fewer copied pages)
    # Every page this process writes after a fork is copied (it shares them with the sandboxes):
    # no automatic collections here (they walk the young objects); the loop collects itself
    # every few hundred programs, and each sandbox turns collection back on.
    gc.disable()
    base_vm = _vm_size()
    bare = len(os.listdir("/proc/self/task")) == 1  # single-threaded: fork without at-fork hooks
    if namespaces:
        sc.unshare(sc.CLONE_NEWNET | sc.CLONE_NEWNS)
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
        view = rootfs.plan(packages)
        own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        under_scratch = rootfs.enter(view)
    else:
        under_scratch = []
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    # Inherited by every sandbox, so set once here: the sandbox environment, no_new_privs (this
    # process never executes anything), the umask (after the root was built with its modes).
    os.environ.clear()
    os.environ.update(SANDBOX_ENV, HOME=SCRATCH)
    sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    os.umask(0o077)
    worker = os.getppid()
    seq, slot = 0, 0
    limits: Limits | None = None
    request, served = b"", 0  # the last spawn request (its limits), spawns served
    spare: _Spare | None = None
    live: dict[int, _Spare] = {}  # pidfd -> sandbox handed out (or discarded), not yet reaped

    def fork_spare() -> _Spare:
        nonlocal seq, slot
        seq += 1
        slot = (slot + 1) % len(cgroup_fds)
        uid = UID_BASE + worker * 256 + seq % 256 if namespaces else None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        if namespaces:
            cwd = SCRATCH
            sc.unshare(sc.CLONE_NEWPID)
        else:
            cwd = tempfile.mkdtemp(dir=scratch)
        pid = sc.fork_bare() if bare else os.fork()
        if pid == 0:  # (its copies of the fork server's fds are closed in _sandbox_child)
            _sandbox_child(theirs.fileno(), uid, limits, namespaces, cwd, base_vm,
                           cgroup_fds[slot], under_scratch, reseed=bare)
        if namespaces:
            sc.setns(own_pidns, sc.CLONE_NEWPID)
        theirs.close()
        return _Spare(seq, pid, os.pidfd_open(pid), ours, slot, None if namespaces else cwd)

    def retire(s: _Spare) -> None:
        live[s.pidfd] = s
        s.sock.close()

    sock.sendall(b"R")
    while True:
        if spare is None and limits is not None:
            spare = fork_spare()
        ready, _, _ = select.select([sock, *live], [], [])
        for pidfd in ready:
            if pidfd is sock:
                continue
            done = live.pop(pidfd)
            _, status = os.waitpid(done.pid, 0)
            os.close(pidfd)
            if not namespaces:
                _kill_children(exclude={s.pid for s in live.values()}
                               | ({spare.pid} if spare else set()))
                remove_tree(done.cwd)
            code = os.waitstatus_to_exitcode(status)  # exit code, or minus the signal
            try:
                sock.send(_MSG.pack(b"x", done.sid, done.pid, code))
            except OSError:  # the worker is gone; the next recv ends the loop
                pass
        if sock not in ready:
            continue
        try:
            msg = sock.recv(1 << 16)
        except ConnectionResetError:
            msg = b""
        if not msg:
            for s in ([spare] if spare else []) + list(live.values()):
                try:
                    signal.pidfd_send_signal(s.pidfd, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not namespaces:
                _kill_children(exclude=set())  # every sandbox, reaped: their folders can go
                for s in ([spare] if spare else []) + list(live.values()):
                    remove_tree(s.cwd)
            os._exit(0)
        if msg != request:  # new limits (parsed only when they change: fewer copied pages)
            request, wanted = msg, Limits(**json.loads(msg)["limits"])
            if spare is not None and wanted != limits:
                signal.pidfd_send_signal(spare.pidfd, signal.SIGKILL)
                retire(spare)
                spare = None
            limits = wanted
        served += 1
        if served % 256 == 0:
            gc.collect()
        if spare is None:
            spare = fork_spare()
        try:
            socket.send_fds(sock, [_MSG.pack(b"s", spare.sid, spare.pid, spare.slot)],
                            [spare.pidfd, spare.sock.fileno()])
        except OSError:  # the worker is gone: the next recv ends the loop
            pass
        retire(spare)
        spare = None


def namespaces_available() -> bool:
    """True when this process may create the namespaces and switch uid (root, no seccomp veto)."""
    if os.geteuid() != 0:
        return False
    pid = os.fork()
    if pid == 0:
        try:
            sc.unshare(sc.CLONE_NEWNET | sc.CLONE_NEWNS | sc.CLONE_NEWPID | sc.CLONE_NEWIPC)
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
    """Worker-side handle on the fork server. `groups` (`cgroups.SandboxGroup`s, or none) hold
    the sandboxes it starts, in turn, and count their CPU."""

    def __init__(self, namespaces: bool, groups=(), packages=rootfs.DEFAULT_PACKAGES):
        self.namespaces = namespaces
        self.groups = list(groups)
        self.scratch: str | None = None  # mode "basic": the folder holding the sandboxes' cwds
        if not namespaces:
            remove_stale_scratch()
            self.scratch = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-")
        try:
            self._start(namespaces, packages)
        except BaseException:
            if self.scratch is not None:
                remove_tree(self.scratch)
            raise
        self.ending: int | None = None  # pidfd of the last sandbox killed, until it has ended
        self.exits: dict[int, int] = {}  # exit statuses reported and not yet asked for
        self.forget: set[int] = set()  # sandboxes whose exit status nobody will ask for
        self._requests: dict[Limits, bytes] = {}  # spawn request by limits

    def _start(self, namespaces: bool, packages) -> None:
        procs = [g.procs_files() for g in self.groups]
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            parent.close()
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)  # the worker's pipes to the pool stay out of reach
            os.dup2(null, 1)
            try:
                zygote_main(child, namespaces, procs, packages, self.scratch)
            except BaseException:  # noqa: BLE001
                import traceback

                traceback.print_exc()
            os._exit(1)
        child.close()
        self.pid = pid
        self.sock = parent
        self.sock.settimeout(120)  # a fork server that stops answering is an anomaly (OSError)
        try:
            ready = self.sock.recv(1) == b"R"
        except OSError:
            ready = False
        if not ready:
            self.sock.close()
            self._end_server()
            raise RuntimeError("sandbox fork server failed to start")

    def _next(self) -> tuple[bytes, int, int, int, list[int]]:
        msg, fds, _, _ = socket.recv_fds(self.sock, _MSG.size, 2)
        if len(msg) != _MSG.size:
            for fd in fds:
                os.close(fd)
            raise RuntimeError("sandbox fork server died")
        kind, sid, pid, value = _MSG.unpack(msg)
        if kind == b"x":
            if sid in self.forget:
                self.forget.discard(sid)
            else:
                self.exits[sid] = value
        return kind, sid, pid, value, fds

    def wait_exit(self, sid: int) -> int:
        """The exit code (or minus the signal) of sandbox `sid`, once the fork server reaped it."""
        while sid not in self.exits:
            self._next()
        return self.exits.pop(sid)

    def spawn(self, limits: Limits, stdio: tuple[int, int] | None = None) -> "Sandbox":
        """Take the fork server's waiting sandbox (it forks the next one meanwhile). `stdio`
        (stdin_fd, stdout_fd) become the program's fds 0 and 1, sent with its first request
        (the caller keeps and closes its own copies); else both stay /dev/null."""
        request = self._requests.get(limits)
        if request is None:  # (encoded once per Limits: the fork server compares the bytes)
            request = self._requests[limits] = json.dumps(
                {"limits": dataclasses.asdict(limits)}).encode()
        self.sock.send(request)
        while True:
            kind, sid, pid, slot, fds = self._next()
            if kind == b"s":
                break
        if len(fds) != 2:
            raise RuntimeError("sandbox fork server died")
        group = self.groups[slot] if self.groups else None
        sandbox = Sandbox(self, sid, pid, fds[0], socket.socket(fileno=fds[1]), group, stdio)
        self._wait_previous(sandbox)
        return sandbox

    def _wait_previous(self, sandbox: "Sandbox") -> None:
        """Before a new program may run: the previous one entirely gone. Its PID 1 is reported
        exited only after every other process of its namespace has been killed and reaped and
        its own files are closed, so nothing of it (a process, lock, socket) meets this one."""

        fd, self.ending = self.ending, None
        if fd is None:
            return
        try:
            if not select.select([fd], [], [], 30)[0]:
                sandbox.kill(wait=False)
                raise RuntimeError("a killed sandbox did not end within 30 s")
        finally:
            os.close(fd)

    def close(self) -> None:
        """Let the fork server exit on its own, else kill it; then remove the sandboxes' folders
        (mode "basic") whatever it managed to remove itself."""
        self.sock.close()
        try:
            self._end_server()
        finally:
            if self.scratch is not None:
                remove_tree(self.scratch)

    def _end_server(self) -> None:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                if os.waitpid(self.pid, os.WNOHANG)[0]:
                    return
            except ChildProcessError:
                return
            time.sleep(0.005)
        try:
            os.kill(self.pid, signal.SIGKILL)  # its sandboxes follow (parent-death signal)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


class Sandbox:
    """One running program: framed JSON request/response with CPU and wall budgets."""

    def __init__(self, zygote: Zygote, sid: int, pid: int, pidfd: int, sock: socket.socket,
                 group=None,
                 stdio: tuple[int, int] | None = None, max_reply: int = 32 << 20):
        self.zygote, self.sid, self.pid, self.pidfd, self.sock = zygote, sid, pid, pidfd, sock
        self.group = group
        self.cpus = self.group.cpus if self.group is not None else float(os.cpu_count() or 1)
        self.max_reply = max_reply
        self._stdio = list(stdio) if stdio else []  # sent with the first request
        self.buf = b""
        self.status: int | None = None
        self._killed = False
        self._exited = False
        self._cpu = 0.0
        self._bound = 0.0  # upper bound on CPU seconds used since the budget began (no cgroup)
        self._used = 0.0  # CPU seconds used since the budget began, as last measured
        self._loaded = False  # a budget has been started (the program may have run since)

    def send(self, obj) -> None:
        data = json.dumps(obj).encode()
        frame = struct.pack(">I", len(data)) + data
        try:
            if self._stdio:
                sent = socket.send_fds(self.sock, [frame], self._stdio)
                self._stdio = []
                frame = frame[sent:]
            self.sock.sendall(frame)
        except OSError as e:
            raise SandboxDied(str(e)) from e

    def cpu(self) -> float:
        """CPU seconds used so far: the cgroup's counter (every process the program ever had),
        else the live process tree from /proc (the last value once the process has exited)."""
        if self.group is not None:
            return self.group.cpu_seconds()

        if self._killed:
            return self._cpu  # its pidfd is closed; the last reading stands
        if not self._exited and select.select([self.pidfd], [], [], 0)[0]:
            self._exited = True  # reaped soon: its pid may name another process
        if not self._exited:
            self._cpu = tree_cpu_seconds(self.pid)
        return self._cpu

    def start_budget(self) -> float:
        """CPU seconds used so far, from which a new budget (a test's) counts."""
        self._bound = self._used = 0.0
        if self.group is None and not self._loaded:
            self._loaded = True  # no children yet: one /proc read suffices
            return cpu_seconds(self.pid)
        return self.cpu()

    def recv(self, cpu_start: float, cpu_limit: float, wall_deadline: float,
             wall_per_cpu: float = 0.0) -> dict:
        """The next reply; raises SandboxTimeout / SandboxDied / OutputLimit.

        The CPU budget (`cpu_limit` seconds since `cpu_start`) is checked when a reply arrives
        and while waiting; the wall deadline moves by `wall_per_cpu` seconds per CPU second the
        program uses (slack for a loaded host). With a cgroup the counter is read directly (one
        pread); without one, /proc is read only when an upper bound (the last reading plus the
        time waited times the CPUs the tree may use) says the budget could be spent.
        """

        need = None
        while True:
            if need is None and len(self.buf) >= 4:
                (need,) = struct.unpack(">I", self.buf[:4])
                if need > self.max_reply:
                    raise OutputLimit(f"reply of {need} bytes")
            if need is not None and len(self.buf) >= 4 + need:
                data, self.buf = self.buf[4:4 + need], self.buf[4 + need:]
                if self.group is not None or self._bound >= cpu_limit:
                    if self.cpu() - cpu_start >= cpu_limit:
                        raise SandboxTimeout()
                try:
                    reply = json.loads(data)
                except ValueError as e:
                    raise SandboxDied(f"invalid reply: {e}") from e
                if not isinstance(reply, dict):
                    raise SandboxDied("invalid reply")
                return reply
            if self.group is not None or self._bound >= cpu_limit:
                self._used = self._bound = self.cpu() - cpu_start
                if self._used >= cpu_limit:
                    raise SandboxTimeout()
            deadline = wall_deadline + wall_per_cpu * self._used
            now = time.monotonic()
            if now >= deadline:
                raise SandboxTimeout()
            wait = min(deadline - now, max((cpu_limit - self._bound) / self.cpus, 0.005))
            ready, _, _ = select.select([self.sock], [], [], wait)
            self._bound += (time.monotonic() - now) * self.cpus
            if ready:
                # 64 KiB unless a large reply is known to be coming: a 1 MiB buffer is mapped,
                # shrunk and unmapped again for every small reply
                size = 1 << 16 if need is None else min(max(4 + need - len(self.buf), 1 << 16),
                                                        1 << 20)
                try:
                    chunk = self.sock.recv(size)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise SandboxDied("connection closed")
                self.buf += chunk
                if need is not None and len(self.buf) > 4 + self.max_reply:
                    raise OutputLimit("reply too large")

    def kill(self, wait: bool = True) -> int | None:
        """Kill the sandbox (its whole PID namespace). With `wait`, return its exit code or
        minus the signal once the fork server has reaped it; else return at once (None)."""
        if not self._killed:
            self._killed = True
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.sock.close()
            if self.zygote.namespaces and self.zygote.ending is None:
                self.zygote.ending = self.pidfd  # the next spawn waits for its end
            else:
                os.close(self.pidfd)
            if not wait and self.zygote.exits.pop(self.sid, None) is None:
                self.zygote.forget.add(self.sid)  # its exit report is dropped when it comes
        if wait and self.status is None:
            if self.sid in self.zygote.forget:  # killed earlier without waiting
                self.status = -signal.SIGKILL
            else:
                self.status = self.zygote.wait_exit(self.sid)
        return self.status
