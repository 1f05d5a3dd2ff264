"""Channels between programs judged at the same time on different pool workers.

Each worker has its own fork server, namespaces, uids and scratch files, but the files every
sandbox sees (interpreter, standard library, /dev/null) are the same inodes, and the kernel
attaches state to an inode that any process able to open or map it can create and observe:
locks, notices of access, futex queues, page-cache residency, timestamps. seccomp.py and the
read-only /dev binds of rootfs.py close them; these tests pair a signalling program with a
detecting one, run concurrently on a two-worker pool.

Neither side needs the other to be on time: each reports what its own system calls returned
(the refusal, with its errno), and only where a call was allowed (the defence off) does it go
on to signal or to look for the signal, for up to HOLD seconds. So a test fails with the
defence off whether or not the two programs overlapped, and passes with it on however loaded
the machine is. A program reports by raising `RuntimeError("REPORT <json>")`.
"""
import errno
import json
import os
import textwrap

import pytest

from coderl_jax.data.records import Problem, Tests as Cases
from coderl_jax.execution.pool import ExecutionPool

ONE = Problem("one", "double", "stdin", Cases(inputs=("2\n",), outputs=("4\n",)))
HOLD = 8.0  # seconds a program signals, or looks, when its calls were allowed
PRELUDE = textwrap.dedent(f"""
    import ctypes, errno, fcntl, json, mmap, os, select, socket, struct, time
    HOLD = {HOLD}
    libc = ctypes.CDLL(None, use_errno=True)

    def name(e):
        return errno.errorcode.get(e, str(e))

    def outcome(call):
        try:
            call()
            return 'ok'
        except OSError as e:
            return name(e.errno)

    def syscall(nr, *args):
        r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
        return 'ok' if r >= 0 else name(ctypes.get_errno())
    """)


@pytest.fixture(scope="module")
def pool():
    if os.geteuid() != 0:
        pytest.skip("the full sandbox needs root (as in CI)")
    with ExecutionPool(workers=2, timeout=2 * HOLD, wall_timeout=4 * HOLD, cache_size=0) as p:
        assert p.run_one(ONE, "print(int(input()) * 2)")["result"] == 1
        assert p.namespaces and p.isolation["seccomp"], p.isolation
        yield p


def reports(pool, *programs: str) -> list:
    """Run `programs` at once (one per worker) and return what each reported."""
    rows = [{"problem_id": "one",  # (numbered: the pool runs identical programs only once)
             "code": f"# program {i}" + PRELUDE + textwrap.dedent(code)
             + "\nraise RuntimeError('REPORT ' + json.dumps(report))\n"}
            for i, code in enumerate(programs)]
    out = []
    for r in pool.run({"one": ONE}, rows):
        message = r.get("error_message") or ""
        assert message.startswith("RuntimeError: REPORT "), r
        out.append(json.loads(message[len("RuntimeError: REPORT "):]))
    return out


def test_flock_on_a_shared_file(pool):
    """One program holds a shared flock on a standard-library file; the other tries an exclusive
    one (it would fail while the first holds it)."""
    signaller = """
        fd = os.open(os.__file__, os.O_RDONLY)
        report = outcome(lambda: fcntl.flock(fd, fcntl.LOCK_SH))
        if report == 'ok':
            time.sleep(HOLD)
        """
    detector = """
        fd = os.open(os.__file__, os.O_RDONLY)
        deadline = time.monotonic() + HOLD
        while True:
            report = outcome(lambda: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB))
            if report != 'ok' or time.monotonic() > deadline:
                break  # EWOULDBLOCK: the signal; ENOLCK: refused
            fcntl.flock(fd, fcntl.LOCK_UN)
            time.sleep(0.01)
        """
    assert reports(pool, signaller, detector) == ["ENOLCK", "ENOLCK"]


def test_record_locks_on_shared_files(pool):
    """POSIX and open-file-description record locks: read locks on a read-only standard-library
    file (seen by F_GETLK / F_OFD_GETLK asking for a write lock), and a write lock on
    /dev/null, which every program may open for writing."""
    common = """
        F_OFD_GETLK, F_OFD_SETLK = 36, 37
        lib = os.open(os.__file__, os.O_RDONLY)
        null = os.open('/dev/null', os.O_RDWR)
        def flock(kind):  # struct flock: type, whence, start, len, pid (0: whole file)
            return struct.pack('hhqqi4x', kind, 0, 0, 0, 0)
        """
    signaller = common + """
        report = [outcome(lambda: fcntl.fcntl(lib, fcntl.F_SETLK, flock(fcntl.F_RDLCK))),
                  outcome(lambda: fcntl.fcntl(lib, F_OFD_SETLK, flock(fcntl.F_RDLCK))),
                  outcome(lambda: fcntl.fcntl(null, fcntl.F_SETLK, flock(fcntl.F_WRLCK))),
                  outcome(lambda: fcntl.lockf(lib, fcntl.LOCK_SH))]
        if 'ok' in report:
            time.sleep(HOLD)
        """
    detector = common + """
        def probe(fd, cmd):
            try:
                got = fcntl.fcntl(fd, cmd, flock(fcntl.F_WRLCK))
            except OSError as e:
                return name(e.errno)  # EAGAIN for F_SETLK: held by the other program
            return 'free' if struct.unpack('hhqqi4x', got)[0] == fcntl.F_UNLCK else 'held'
        deadline = time.monotonic() + HOLD
        while True:
            report = [probe(lib, fcntl.F_GETLK), probe(lib, F_OFD_GETLK),
                      probe(null, fcntl.F_SETLK)]
            if report != ['free'] * 3 or time.monotonic() > deadline:
                break
            fcntl.fcntl(null, fcntl.F_SETLK, flock(fcntl.F_UNLCK))
            time.sleep(0.01)
        """
    signalled, detected = reports(pool, signaller, detector)
    assert signalled == ["ENOLCK"] * 4
    assert detected == ["ENOLCK"] * 3


def test_notices_of_access_to_shared_files(pool):
    """inotify and dnotify would tell one program when another opens or reads a standard-library
    file; a lease would too. The signaller reads the file over and over if it could watch."""
    watch = """
        IN_OPEN, IN_ACCESS, DN_ACCESS, DN_MULTISHOT = 0x20, 0x1, 0x1, 0x80000000
        F_SETLEASE, F_GETLEASE, F_NOTIFY = 1024, 1025, 1026
        folder = os.open(os.path.dirname(os.__file__), os.O_RDONLY)
        lib = os.open(os.__file__, os.O_RDONLY)
        report = [syscall(253), syscall(294, 0),
                  outcome(lambda: fcntl.fcntl(folder, F_NOTIFY, DN_ACCESS | DN_MULTISHOT)),
                  outcome(lambda: fcntl.fcntl(lib, F_SETLEASE, fcntl.F_RDLCK)),
                  outcome(lambda: fcntl.fcntl(lib, F_GETLEASE))]
        """
    signaller = watch + """
        deadline = time.monotonic() + HOLD
        while 'ok' in report and time.monotonic() < deadline:
            fd = os.open(os.__file__, os.O_RDONLY)  # (`open` is the harness's: the input)
            os.read(fd, 1)
            os.close(fd)
        """
    detector = watch + """
        fd = libc.syscall(ctypes.c_long(294), ctypes.c_long(0))
        if fd >= 0:
            libc.inotify_add_watch(fd, os.__file__.encode(), IN_OPEN | IN_ACCESS)
            seen = select.select([fd], [], [], HOLD)[0]
            report.append('seen' if seen else 'not seen')
        """
    expected = ["EPERM"] * 5
    assert reports(pool, signaller, detector) == [expected, expected]


def test_futexes_keyed_by_a_shared_file(pool):
    """A futex that is not private, on a page of a mapped file, is keyed by the file's inode: a
    program waiting on a word of a standard-library file would be woken, and counted, by another
    program's wake on its own mapping of the same file."""
    common = """
        FUTEX_WAIT, FUTEX_WAKE, FUTEX_LOCK_PI = 0, 1, 6
        lib = os.open(os.__file__, os.O_RDONLY)
        m = mmap.mmap(lib, 4096, access=mmap.ACCESS_READ)
        value = struct.unpack('I', m[:4])[0]
        with os.fdopen(os.open('/proc/self/maps', os.O_RDONLY)) as maps:
            addr = [int(line.split('-')[0], 16) for line in maps
                    if line.rstrip().endswith(os.__file__)][-1]
        class Timespec(ctypes.Structure):
            _fields_ = [('sec', ctypes.c_long), ('nsec', ctypes.c_long)]
        def futex(op, val, seconds=0.0):
            t = Timespec(int(seconds), int(seconds % 1 * 1e9))
            r = libc.syscall(ctypes.c_long(202), ctypes.c_void_p(addr), ctypes.c_int(op),
                             ctypes.c_int(val), ctypes.byref(t), None, ctypes.c_int(0))
            return r if r >= 0 else name(ctypes.get_errno())
        """
    signaller = common + """
        report = [futex(FUTEX_WAIT, value, 0.01), futex(FUTEX_LOCK_PI, 0),
                  syscall(449, 0, 0, 0, 0, 0)]  # futex_waitv
        woken, deadline = [], time.monotonic() + HOLD
        while report[0] == 'ETIMEDOUT' and time.monotonic() < deadline:
            woken.append(futex(FUTEX_WAKE, 1))
            time.sleep(0.001)
        report.append(max(woken, default=0))
        """
    detector = common + """
        report = [futex(FUTEX_WAIT, value, HOLD)]  # 0: woken by the other program
        """
    signalled, detected = reports(pool, signaller, detector)
    assert signalled == ["EAGAIN", "ENOSYS", "ENOSYS", 0]
    assert detected == ["EAGAIN"]


def test_page_cache_of_shared_files(pool):
    """Whether a page of a shared file is cached tells whether another program read it (or
    evicted it with POSIX_FADV_DONTNEED): preadv2 with RWF_NOWAIT, cachestat and Linux AIO reads
    with RWF_NOWAIT would say."""
    common = """
        lib = os.open(os.path.join(os.path.dirname(os.__file__), 'pydoc.py'), os.O_RDONLY)
        class Range(ctypes.Structure):
            _fields_ = [('off', ctypes.c_uint64), ('len', ctypes.c_uint64)]
        stat = ctypes.create_string_buffer(64)
        ctx = ctypes.c_ulong(0)
        report = [outcome(lambda: os.preadv(lib, [bytearray(4096)], 0, os.RWF_NOWAIT)),
                  syscall(451, lib, ctypes.addressof(Range(0, 0)), ctypes.addressof(stat), 0),
                  syscall(206, 8, ctypes.addressof(ctx))]  # io_setup: Linux AIO
        """
    signaller = common + """
        deadline = time.monotonic() + HOLD
        while 'ok' in report and time.monotonic() < deadline:
            os.posix_fadvise(lib, 0, 0, os.POSIX_FADV_DONTNEED)
            time.sleep(0.01)
        """
    detector = common + """
        deadline = time.monotonic() + HOLD
        while report[0] == 'ok' and time.monotonic() < deadline:
            if outcome(lambda: os.preadv(lib, [bytearray(4096)], 0, os.RWF_NOWAIT)) == 'EAGAIN':
                report.append('seen')  # evicted by the other program
                break
            time.sleep(0.001)
        """
    expected = [errno.errorcode[errno.EOPNOTSUPP], "EPERM", "ENOSYS"]
    assert reports(pool, signaller, detector) == [expected, expected]


def test_timestamps_of_shared_device_nodes(pool):
    """/dev/null is writable by everyone, so `utime` could set its times (the host's inode):
    the /dev binds are read-only, which leaves the devices writable."""
    signaller = """
        report = [outcome(lambda: os.utime('/dev/null')), outcome(lambda: os.utime('/dev/zero'))]
        deadline = time.monotonic() + HOLD
        while 'ok' in report and time.monotonic() < deadline:
            os.utime('/dev/null')
            time.sleep(0.01)
        report.append(os.write(os.open('/dev/null', os.O_WRONLY), b'still a device'))
        """
    detector = """
        before = os.stat('/dev/null').st_mtime_ns
        report = [outcome(lambda: os.utime('/dev/null')), outcome(lambda: os.utime('/dev/zero'))]
        deadline = time.monotonic() + HOLD
        while 'ok' in report and time.monotonic() < deadline:
            if os.stat('/dev/null').st_mtime_ns != before:
                report.append('seen')
                break
            time.sleep(0.01)
        """
    signalled, detected = reports(pool, signaller, detector)
    assert signalled == ["EROFS", "EROFS", 14]
    assert detected == ["EROFS", "EROFS"]


def test_socket_families_outside_the_network_namespace(pool):
    """vsock ports are not per network namespace (a second bind of a port fails whichever
    namespace holds it): two programs could meet on one, and a virtual machine's programs reach
    its host. Only unix, inet, inet6 and netlink sockets can be made."""
    program = """
        AF_VSOCK, VMADDR_CID_ANY = 40, 0xFFFFFFFF
        report = []
        for family, kind in ((AF_VSOCK, socket.SOCK_STREAM), (38, socket.SOCK_SEQPACKET),
                             (socket.AF_UNIX, socket.SOCK_STREAM),
                             (socket.AF_INET, socket.SOCK_DGRAM),
                             (socket.AF_INET6, socket.SOCK_DGRAM), (socket.AF_NETLINK, 3)):
            report.append(outcome(lambda: socket.socket(family, kind).close()))
        report.append(outcome(lambda: socket.socketpair(AF_VSOCK)))
        if report[0] == 'ok':  # both bind the same local port: one fails while the other holds
            s = socket.socket(AF_VSOCK, socket.SOCK_STREAM)
            report.append(outcome(lambda: s.bind((VMADDR_CID_ANY, 47301))))
            time.sleep(HOLD)
        """
    expected = ["EAFNOSUPPORT", "EAFNOSUPPORT", "ok", "ok", "ok", "ok", "EAFNOSUPPORT"]
    assert reports(pool, program, program) == [expected, expected]


ORDINARY = """
    import multiprocessing, sqlite3, threading
    report = []
    lock, done = threading.Lock(), []
    def work():
        for _ in range(1000):
            with lock:
                done.append(1)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report.append(len(done))
    ctx = multiprocessing.get_context('fork')
    sem = ctx.Semaphore(0)
    child = ctx.Process(target=lambda: (time.sleep(0.2), sem.release()))
    child.start()
    report.append(sem.acquire(timeout=HOLD))
    child.join()
    db = sqlite3.connect(':memory:')
    report.append(db.execute('select 6 * 7').fetchone()[0])
    a, b = socket.socketpair()
    a.send(b'x')
    report.append(b.recv(1).decode())
    flags = fcntl.fcntl(a.fileno(), fcntl.F_GETFL)
    fcntl.fcntl(a.fileno(), fcntl.F_SETFL, flags | os.O_NONBLOCK)
    report.append(bool(fcntl.fcntl(a.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK))
    lib = os.open(os.__file__, os.O_RDONLY)
    report.append(os.preadv(lib, [bytearray(8)], 0))
    """
ORDINARY_REPORT = [4000, True, 42, "x", True, 8]


def test_ordinary_programs_keep_working(pool):
    """What the filter leaves: threads and their locks (private futexes), a semaphore shared by
    two processes (process-shared futexes, now spinning), sqlite3 in memory, unix sockets,
    ordinary fcntl commands and reads."""
    assert reports(pool, ORDINARY) == [ORDINARY_REPORT]


def test_basic_mode_keeps_working_under_the_filter():
    """Mode "basic" (no namespaces) installs the same filter: ordinary programs still work and
    locks are refused."""
    locker = """
        report = outcome(lambda: fcntl.flock(os.open(os.__file__, os.O_RDONLY), fcntl.LOCK_SH))
        """
    with ExecutionPool(workers=2, timeout=2 * HOLD, wall_timeout=4 * HOLD, cache_size=0,
                       isolation="basic") as p:
        assert reports(p, ORDINARY, locker) == [ORDINARY_REPORT, "ENOLCK"]
