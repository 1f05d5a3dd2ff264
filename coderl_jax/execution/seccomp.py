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

# x86-64 numbers of the denied calls.
DENIED = {
    "ptrace": 101, "syslog": 103, "uselib": 134, "personality": 135, "vhangup": 153,
    "modify_ldt": 154, "pivot_root": 155, "_sysctl": 156, "adjtimex": 159, "chroot": 161,
    "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166, "swapon": 167,
    "swapoff": 168, "reboot": 169, "sethostname": 170, "setdomainname": 171, "iopl": 172,
    "ioperm": 173, "init_module": 175, "delete_module": 176, "quotactl": 179,
    "nfsservctl": 180, "lookup_dcookie": 212, "clock_settime": 227, "kexec_load": 246,
    "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272, "perf_event_open": 298,
    "fanotify_init": 300, "name_to_handle_at": 303, "open_by_handle_at": 304,
    "clock_adjtime": 305, "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311,
    "kcmp": 312, "finit_module": 313, "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428,
    "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "pidfd_getfd": 438, "process_madvise": 440, "mount_setattr": 442, "quotactl_fd": 443,
    "memfd_secret": 447,
}
NR_CLONE, NR_CLONE3, NR_IOCTL = 56, 435, 16
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
CLONE_NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 \
    | 0x20000000 | 0x40000000
TIOCSTI, TIOCLINUX = 0x5412, 0x541C

# classic BPF opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
# offsets in struct seccomp_data
_NR, _ARCH, _ARG0_LO, _ARG1_LO = 0, 4, 16, 24


def available() -> bool:
    return platform.machine() in ("x86_64", "AMD64")


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def _ranges(numbers) -> list[tuple[int, int]]:
    """Sorted numbers as maximal runs [lo, hi]."""
    out: list[list[int]] = []
    for n in sorted(numbers):
        if out and n == out[-1][1] + 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return [(lo, hi) for lo, hi in out]


def program() -> bytes:
    """The filter as packed `struct sock_filter`s.

    The denied numbers are tested as runs, by binary search: installing a filter costs the kernel
    work in proportion to its length (a JIT compilation, and an emulation per system call number
    for its cache of always-allowed calls), and every sandbox installs it afresh."""
    deny, allow = SECCOMP_RET_ERRNO | errno.EPERM, SECCOMP_RET_ALLOW
    code: list[tuple] = []  # (opcode, k, true target, false target); targets are labels or None

    def emit(op, k=0, jt=None, jf=None):
        code.append((op, k, jt, jf))

    labels: dict[str, int] = {}
    emit(_LD_W_ABS, _ARCH)
    emit(_JEQ_K, AUDIT_ARCH_X86_64, None, "kill")
    emit(_LD_W_ABS, _NR)
    emit(_JGE_K, X32_BIT, "kill", None)
    emit(_JEQ_K, NR_CLONE, "clone", None)
    emit(_JEQ_K, NR_CLONE3, "enosys", None)
    emit(_JEQ_K, NR_IOCTL, "ioctl", None)

    def tree(runs: list[tuple[int, int]]) -> None:
        """Deny if the number (in A) lies in one of `runs`, else allow."""
        if len(runs) <= 2:
            for i, (lo, hi) in enumerate(runs):
                miss = "allow" if i == len(runs) - 1 else f"run{len(labels)}"
                if lo == hi:
                    emit(_JEQ_K, lo, "deny", miss)
                else:  # lo <= nr <= hi: nr >= lo and not nr >= hi + 1
                    emit(_JGE_K, lo, None, miss)
                    emit(_JGE_K, hi + 1, miss, "deny")
                if miss != "allow":
                    labels[miss] = len(code)
            return
        mid = len(runs) // 2
        right = f"right{len(code)}"
        emit(_JGE_K, runs[mid][0], right, None)
        tree(runs[:mid])
        labels[right] = len(code)
        tree(runs[mid:])

    tree(_ranges(DENIED.values()))
    # clone: no namespace flags (threads and fork pass)
    labels["clone"] = len(code)
    emit(_LD_W_ABS, _ARG0_LO)
    emit(_JSET_K, CLONE_NAMESPACE_FLAGS, "deny", "allow")
    # ioctl: no typing into terminals
    labels["ioctl"] = len(code)
    emit(_LD_W_ABS, _ARG1_LO)
    emit(_JEQ_K, TIOCSTI, "deny", None)
    emit(_JEQ_K, TIOCLINUX, "deny", "allow")
    for name, ret in (("allow", allow), ("deny", deny), ("kill", SECCOMP_RET_KILL_PROCESS),
                      ("enosys", SECCOMP_RET_ERRNO | errno.ENOSYS)):
        labels[name] = len(code)
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
