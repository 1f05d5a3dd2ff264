"""A seccomp filter for sandboxed programs: the kernel interfaces no judged program needs.

The sandbox's first defences are what the program can name (an allow-listed filesystem view, its
own PID/IPC/mount/network namespaces) and who it is (an unprivileged uid without capabilities,
no_new_privs). This filter takes away kernel surface that an unprivileged process still reaches
and that only serves an attacker here: creating namespaces (user namespaces would hand it
capabilities over new mounts), mounting, keyrings (shared per uid), tracing other processes,
eBPF, perf, userfaultfd, io_uring, handles by inode, module and kexec calls, clock setting, and
`TIOCSTI`/`TIOCLINUX` (typing into a terminal). Denied calls fail with EPERM (`clone3` with ENOSYS,
so the C library falls back to `clone`, whose flags a classic filter can read). System calls of
another ABI (x32, or i386 through `int 0x80`) kill the process: their numbers differ and would
slip past the table.

It also closes the channels between programs that run at the same time on different pool
workers. Their namespaces, uids and scratch files are their own, but the files of their view
(interpreter, standard library, /usr/lib, /dev/null) are the same inodes, and the kernel
attaches state to an inode that any process able to open or map it can create and observe:

  * file locks: `flock` and fcntl's F_GETLK/F_SETLK/F_SETLKW and their OFD forms fail with
    ENOLCK ("no locks available"). This also refuses locks on a program's own files: sqlite3
    on a file in /tmp reports "database is locked" (":memory:", or `?vfs=unix-none`, works).
    A lock on a private file cannot be told from one on a shared file by a classic filter,
    and read locks alone would still leave /dev/null, writable by all, to lock; judged
    programs do not need locks, so none are handed out.
  * fcntl's F_NOTIFY (dnotify), F_SETLEASE/F_GETLEASE, and inotify: EPERM (they report
    another process opening or reading a shared file);
  * process-shared futexes: a futex without FUTEX_PRIVATE_FLAG on a page of a mapped file is
    keyed by the file's inode, so a program waiting on a word of libc can be woken, and
    counted, by another. Such a wait returns EAGAIN at once ("the word changed": callers check
    it again, so process-shared locks and semaphores, e.g. multiprocessing's, still work, by
    spinning), such a wake or requeue wakes nobody (returns 0), the PI operations fail with
    ENOSYS; `futex_waitv` and the futex2 calls, whose flags the filter cannot read, fail with
    ENOSYS (the C library uses `futex`). Private futexes (threads) are untouched.
  * the page cache of shared files: `preadv2` with RWF_NOWAIT (it fails when the data is not
    cached, telling whether another program read a file) fails with EOPNOTSUPP, `cachestat`
    with EPERM, and Linux AIO (`io_setup`: its reads take RWF_NOWAIT in memory the filter
    cannot read) with ENOSYS, as on kernels built without it (`mincore` no longer reports
    other files' pages, since Linux 5.1);
  * sockets of families no network namespace isolates (AF_VSOCK reaches the hypervisor and
    other guests' processes): `socket`/`socketpair` accept AF_UNIX, AF_INET, AF_INET6 and
    AF_NETLINK only, others fail with EAFNOSUPPORT.

Only the calls whose verdict depends on an argument (clone, ioctl, fcntl, futex, preadv2,
socket, socketpair) run the filter on every call: the kernel caches "always allowed" for the
other numbers.

Built as classic BPF with ctypes (no dependency); x86-64 only, other machines run without it
(reported by `available()`).
"""
from __future__ import annotations

import ctypes
import errno
import platform
import struct

AUDIT_ARCH_X86_64 = 0xC000003E
X32_BIT = 0x40000000
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2

# x86-64 numbers of the denied calls (EPERM).
DENIED = {
    "ptrace": 101, "syslog": 103, "uselib": 134, "personality": 135, "vhangup": 153,
    "modify_ldt": 154, "pivot_root": 155, "_sysctl": 156, "adjtimex": 159, "chroot": 161,
    "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166, "swapon": 167,
    "swapoff": 168, "reboot": 169, "sethostname": 170, "setdomainname": 171, "iopl": 172,
    "ioperm": 173, "init_module": 175, "delete_module": 176, "quotactl": 179,
    "nfsservctl": 180, "lookup_dcookie": 212, "clock_settime": 227, "kexec_load": 246,
    "add_key": 248, "request_key": 249, "keyctl": 250, "inotify_init": 253,
    "inotify_add_watch": 254, "inotify_rm_watch": 255, "unshare": 272, "inotify_init1": 294,
    "perf_event_open": 298, "fanotify_init": 300, "name_to_handle_at": 303,
    "open_by_handle_at": 304, "clock_adjtime": 305, "setns": 308, "process_vm_readv": 310,
    "process_vm_writev": 311, "kcmp": 312, "finit_module": 313, "kexec_file_load": 320,
    "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "pidfd_getfd": 438, "process_madvise": 440,
    "mount_setattr": 442, "quotactl_fd": 443, "memfd_secret": 447, "cachestat": 451,
}
NO_LOCKS = {"flock": 73}  # ENOLCK
NOT_IMPLEMENTED = {"io_setup": 206, "clone3": 435, "futex_waitv": 449, "futex_wake": 454,
                   "futex_wait": 455, "futex_requeue": 456}  # ENOSYS
NR_CLONE, NR_IOCTL, NR_FCNTL, NR_FUTEX, NR_PREADV2 = 56, 16, 72, 202, 327
NR_SOCKET, NR_SOCKETPAIR = 41, 53
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
CLONE_NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 \
    | 0x20000000 | 0x40000000
TIOCSTI, TIOCLINUX = 0x5412, 0x541C
F_LOCK_CMDS = (5, 6, 7, 36, 37, 38)  # F_GETLK F_SETLK F_SETLKW F_OFD_GETLK F_OFD_SETLK F_OFD_SETLKW
F_NOTICE_CMDS = (1024, 1025, 1026)  # F_SETLEASE F_GETLEASE F_NOTIFY
FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME = 128, 256
FUTEX_WAITS = (0, 9)  # FUTEX_WAIT, FUTEX_WAIT_BITSET
FUTEX_PI = 6  # this and above but FUTEX_WAIT_BITSET/FUTEX_WAKE_BITSET (9, 10): PI operations
RWF_NOWAIT = 0x8
SOCKET_FAMILIES = (1, 2, 10, 16)  # AF_UNIX AF_INET AF_INET6 AF_NETLINK

# classic BPF opcodes
_LD_W_ABS = 0x20
_AND_K = 0x54
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
# offsets in struct seccomp_data
_NR, _ARCH, _ARG0_LO, _ARG1_LO, _ARG5_LO = 0, 4, 16, 24, 56


def available() -> bool:
    return platform.machine() in ("x86_64", "AMD64")


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def _runs(targets: dict[int, str]) -> list[tuple[int, int, str]]:
    """{number: label} as sorted maximal runs (lo, hi, label) of consecutive numbers."""
    out: list[list] = []
    for n in sorted(targets):
        if out and n == out[-1][1] + 1 and targets[n] == out[-1][2]:
            out[-1][1] = n
        else:
            out.append([n, n, targets[n]])
    return [tuple(r) for r in out]


def program() -> bytes:
    """The filter as packed `struct sock_filter`s.

    The numbers with a verdict of their own are tested as runs, by binary search: installing a
    filter costs the kernel work in proportion to its length (a JIT compilation, and an
    emulation per system call number for its cache of always-allowed calls), and every sandbox
    installs it afresh. The calls judged by an argument branch to a short test of it."""
    code: list[tuple] = []  # (opcode, k, true target, false target); targets are labels or None
    labels: dict[str, int] = {}

    def emit(op, k=0, jt=None, jf=None):
        code.append((op, k, jt, jf))

    def here(name):
        labels[name] = len(code)

    targets = {nr: "deny" for nr in DENIED.values()}
    targets.update({nr: "enolck" for nr in NO_LOCKS.values()})
    targets.update({nr: "enosys" for nr in NOT_IMPLEMENTED.values()})
    targets.update({NR_CLONE: "clone", NR_IOCTL: "ioctl", NR_FCNTL: "fcntl", NR_FUTEX: "futex",
                    NR_PREADV2: "preadv2", NR_SOCKET: "socket", NR_SOCKETPAIR: "socket"})

    emit(_LD_W_ABS, _ARCH)
    emit(_JEQ_K, AUDIT_ARCH_X86_64, None, "kill")
    emit(_LD_W_ABS, _NR)
    emit(_JGE_K, X32_BIT, "kill", None)

    def tree(runs: list[tuple[int, int, str]]) -> None:
        """Jump to the run's label if the number (in A) lies in one of `runs`, else allow."""
        if len(runs) <= 2:
            for i, (lo, hi, hit) in enumerate(runs):
                miss = "allow" if i == len(runs) - 1 else f"run{len(code)}"
                if lo == hi:
                    emit(_JEQ_K, lo, hit, miss)
                else:  # lo <= nr <= hi: nr >= lo and not nr >= hi + 1
                    emit(_JGE_K, lo, None, miss)
                    emit(_JGE_K, hi + 1, miss, hit)
                if miss != "allow":
                    here(miss)
            return
        mid = len(runs) // 2
        right = f"right{len(code)}"
        emit(_JGE_K, runs[mid][0], right, None)
        tree(runs[:mid])
        here(right)
        tree(runs[mid:])

    tree(_runs(targets))
    here("clone")  # no namespace flags (threads and fork pass)
    emit(_LD_W_ABS, _ARG0_LO)
    emit(_JSET_K, CLONE_NAMESPACE_FLAGS, "deny", "allow")
    here("ioctl")  # no typing into terminals
    emit(_LD_W_ABS, _ARG1_LO)
    emit(_JEQ_K, TIOCSTI, "deny", None)
    emit(_JEQ_K, TIOCLINUX, "deny", "allow")
    here("fcntl")  # no locks, leases or directory notices
    emit(_LD_W_ABS, _ARG1_LO)
    emit(_JGE_K, F_NOTICE_CMDS[0], None, "fcntl_locks")
    emit(_JGE_K, F_NOTICE_CMDS[-1] + 1, "allow", "deny")
    here("fcntl_locks")
    emit(_JGE_K, F_LOCK_CMDS[3], None, "fcntl_posix")
    emit(_JGE_K, F_LOCK_CMDS[5] + 1, "allow", "enolck")
    here("fcntl_posix")
    emit(_JGE_K, F_LOCK_CMDS[0], None, "allow")
    emit(_JGE_K, F_LOCK_CMDS[2] + 1, "allow", "enolck")
    here("futex")  # private futexes pass; process-shared ones meet no other process
    emit(_LD_W_ABS, _ARG1_LO)
    emit(_JSET_K, FUTEX_PRIVATE_FLAG, "allow", None)
    emit(_AND_K, ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME) & 0xFFFFFFFF)
    emit(_JEQ_K, FUTEX_WAITS[0], "eagain", None)
    emit(_JEQ_K, FUTEX_WAITS[1], "eagain", None)
    emit(_JEQ_K, 10, "zero", None)  # FUTEX_WAKE_BITSET
    emit(_JGE_K, FUTEX_PI, "enosys", "zero")  # wake, requeue, wake_op: nobody to wake
    here("preadv2")  # no page-cache probe
    emit(_LD_W_ABS, _ARG5_LO)
    emit(_JSET_K, RWF_NOWAIT, "eopnotsupp", "allow")
    here("socket")  # families isolated by the network namespace
    emit(_LD_W_ABS, _ARG0_LO)
    for family in SOCKET_FAMILIES[:-1]:
        emit(_JEQ_K, family, "allow", None)
    emit(_JEQ_K, SOCKET_FAMILIES[-1], "allow", "eafnosupport")
    for name, ret in (("allow", SECCOMP_RET_ALLOW), ("deny", SECCOMP_RET_ERRNO | errno.EPERM),
                      ("kill", SECCOMP_RET_KILL_PROCESS),
                      ("enosys", SECCOMP_RET_ERRNO | errno.ENOSYS),
                      ("enolck", SECCOMP_RET_ERRNO | errno.ENOLCK),
                      ("eagain", SECCOMP_RET_ERRNO | errno.EAGAIN),
                      ("zero", SECCOMP_RET_ERRNO | 0),
                      ("eopnotsupp", SECCOMP_RET_ERRNO | errno.EOPNOTSUPP),
                      ("eafnosupport", SECCOMP_RET_ERRNO | errno.EAFNOSUPPORT)):
        here(name)
        emit(_RET_K, ret)

    out = []
    for i, (op, k, jt, jf) in enumerate(code):
        if op in (_JEQ_K, _JGE_K, _JSET_K):  # jumps are forward, relative to the next one
            jt, jf = ((labels[t] - i - 1) if t is not None else 0 for t in (jt, jf))
            assert 0 <= jt < 256 and 0 <= jf < 256
        else:
            jt = jf = 0
        out.append(_ins(op, k, jt, jf))
    return b"".join(out)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


_LIBC = ctypes.CDLL(None, use_errno=True)
_PROGRAM = program()
_FPROG = _SockFprog(len(_PROGRAM) // 8, _PROGRAM)  # built once, in the fork server


def install() -> None:
    """Install the filter on the calling thread (its future children inherit it); needs
    no_new_privs or CAP_SYS_ADMIN. Raises OSError on failure."""
    if _LIBC.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(_FPROG), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {errno.errorcode.get(err, err)}")
