"""The filesystem a sandboxed program sees: an allow-list, built once per fork server.

The fork server (in a mount namespace of its own) builds a new root on an empty tmpfs and
`pivot_root`s into it, so neither it nor any program it forks can name a host path afterwards.
The root holds, read-only, nosuid, nodev:

  * the system's shared-library folders (/lib*, /usr/lib*, /usr/local/lib) and the few /etc files
    the dynamic linker and the C library read (`ETC_FILES`);
  * the interpreter (its executable, libpython, the standard library with lib-dynload);
  * of all installed Python packages only the allowed distributions (default: numpy), bound back
    into site-packages folders that are otherwise empty: every site-packages / dist-packages
    folder inside a bound folder is covered by an empty tmpfs, and one outside (a virtualenv,
    wherever it lives, /tmp included) exists in the root only as the path to the allowed packages;
  * /dev with null, zero, full, random, urandom (no tty, no pts; bound read-only, which leaves
    the devices writable but their inodes, the host's, unchangeable: no `utime`, a signal
    between programs otherwise), /proc and /tmp as mount points
    that every sandbox fills with its own proc (of its PID namespace) and its own scratch tmpfs;
    /var/tmp and /dev/shm are links to /tmp.

Nothing else exists: no /home, /root, /srv, /opt, /mnt, /sys, no checkout, no dataset, no host
/tmp. The sources are opened (O_PATH) before anything is covered, so a virtualenv under /tmp
is bound like any other (and bound again inside each program's scratch tmpfs).

Why this mechanism: a new root holds only what was put in it, so what is not allowed does not
exist (not even to `stat` or `listdir`), whatever path a program guesses; it needs nothing but
mount namespaces (no Landlock, which would deny access but leave paths visible and needs Linux
5.13, and no path filtering, which seccomp cannot do on pointers); and it is built once per fork
server, so a program pays only for its own /proc and /tmp mounts. Hiding folders inside the
host's tree (the earlier design) was a deny-list: anything not named stayed readable.
"""
from __future__ import annotations

import dataclasses
import glob
import importlib.metadata
import os
import site
import stat
import sys
import sysconfig

from coderl_jax.execution import syscalls as sc

SYSTEM_LIB_DIRS = ("/lib", "/lib64", "/lib32", "/libx32", "/usr/lib", "/usr/lib64", "/usr/lib32",
                   "/usr/libx32", "/usr/local/lib")
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/nsswitch.conf",
             "/etc/passwd", "/etc/group")
DEVICES = ("null", "zero", "full", "random", "urandom")
DEFAULT_PACKAGES = ("numpy",)
RO = sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV
SCRATCH = "/tmp"  # each program's own tmpfs (cwd and HOME); /var/tmp and /dev/shm link here


@dataclasses.dataclass
class View:
    """What goes into the root: links {path: target}, read-only binds (host paths, shown at the
    same path), empty covers (folders shown empty) and packages (host paths bound inside covers
    or skeleton folders)."""

    links: dict
    binds: list
    covers: list
    packages: list


def _real(p: str) -> str:
    return os.path.realpath(p)


def _under(path: str, parents) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in parents)


def _site_dirs() -> list[str]:
    """Every folder that may hold installed packages."""
    out = list(site.getsitepackages()) + [site.getusersitepackages()]
    for scheme_vars in ({}, {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}):
        paths = sysconfig.get_paths(vars=scheme_vars) if scheme_vars else sysconfig.get_paths()
        out += [paths["purelib"], paths["platlib"]]
    for pattern in ("/usr/lib/python3*/*-packages", "/usr/local/lib/python3*/*-packages",
                    "/usr/lib/python3/dist-packages"):
        out += glob.glob(pattern)
    out += [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    return sorted({_real(p) for p in out if p and os.path.isdir(p)})


def package_paths(names) -> list[str]:
    """Top-level files and folders (package, its vendored libs, its metadata) of the installed
    distributions `names`; missing distributions are skipped."""
    out = set()
    for name in names:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        location = _real(str(dist.locate_file("")))
        for f in dist.files or ():
            top = f.parts[0] if f.parts else ""
            if top and top not in ("..", "__pycache__") and not top.endswith(".pth"):
                path = os.path.join(location, top)
                if os.path.exists(path):
                    out.add(path)
    return sorted(out)


def plan(packages=DEFAULT_PACKAGES) -> View:
    """The allow-list for this interpreter and host."""
    links, binds = {}, []
    for d in SYSTEM_LIB_DIRS:
        if os.path.islink(d):
            links[d] = os.readlink(d)
        elif os.path.isdir(d):
            binds.append(d)
    binds += [f for f in ETC_FILES if os.path.isfile(f)]
    binds.append(_real(sysconfig.get_paths()["stdlib"]))
    binds.append(_real(sys.executable))
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if libdir and soname and os.path.isfile(os.path.join(libdir, soname)):
        binds.append(_real(os.path.join(libdir, soname)))
    top = []
    for b in sorted(set(binds), key=len):
        if not _under(b, top):
            top.append(b)
    covers = [s for s in _site_dirs() if _under(s, top)]
    return View(links, top, covers, package_paths(packages))


def _makedirs(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)


def _target(root: str, path: str, is_dir: bool) -> str:
    t = root + path
    if is_dir:
        _makedirs(t)
    else:
        _makedirs(os.path.dirname(t))
        if not os.path.exists(t):
            os.close(os.open(t, os.O_CREAT | os.O_WRONLY, 0o644))
    return t


def _isdir(fd: int) -> bool:
    """From the fd: the path itself may be covered by the staging tmpfs by now."""
    return stat.S_ISDIR(os.fstat(fd).st_mode)


def _bind(fd: int, target: str, flags: int) -> None:
    sc.mount(f"/proc/self/fd/{fd}", target, None, sc.MS_BIND | sc.MS_REC)
    sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | flags)


def enter(view: View, staging: str = SCRATCH) -> list[str]:
    """Build the root described by `view` on a tmpfs at `staging` and pivot into it.

    Must run in a private mount namespace (the caller's `unshare(CLONE_NEWNS)`). Returns the
    bound paths that lie under /tmp (a virtualenv there): each sandbox's scratch tmpfs covers
    them, so `rebind_under_scratch` binds them again on top of it."""
    sources = sorted(set(view.binds) | set(view.packages) | {f"/dev/{d}" for d in DEVICES})
    fds = {p: os.open(p, os.O_PATH | os.O_CLOEXEC) for p in sources if os.path.exists(p)}
    try:
        root = staging
        sc.mount("tmpfs", root, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, "size=16m,mode=755")
        for path, target in view.links.items():
            _makedirs(os.path.dirname(root + path))
            os.symlink(target, root + path)
        for b in view.binds:
            if b in fds:
                _bind(fds[b], _target(root, b, _isdir(fds[b])), RO)
        covered = []
        for c in view.covers:
            if not _under(c, covered):
                sc.mount("tmpfs", root + c, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, "size=1m,mode=755")
                covered.append(c)
        for p in view.packages:
            if p in fds and not (_under(p, view.binds) and not _under(p, covered)):
                _bind(fds[p], _target(root, p, _isdir(fds[p])), RO)
        for c in covered:
            sc.mount(None, root + c, None, sc.MS_REMOUNT | RO)
        dev = root + "/dev"
        _makedirs(dev)
        sc.mount("tmpfs", dev, "tmpfs", sc.MS_NOSUID | sc.MS_NOEXEC, "size=64k,mode=755")
        for d in DEVICES:
            if f"/dev/{d}" in fds:
                _bind(fds[f"/dev/{d}"], _target(root, f"/dev/{d}", False),
                      sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NOEXEC)  # devices still writable
        for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
                             ("shm", SCRATCH)):
            os.symlink(target, f"{dev}/{name}")
        sc.mount(None, dev, None, sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NOEXEC)
        for d in ("/proc", SCRATCH):
            _makedirs(root + d)
        os.chmod(root + SCRATCH, 0o1777)
        _makedirs(root + "/var")
        if not os.path.lexists(root + "/var/tmp"):  # else a bound path lies under /var/tmp
            os.symlink(SCRATCH, root + "/var/tmp")
    finally:
        for fd in fds.values():
            os.close(fd)
    os.chdir(root)
    sc.pivot_root(".", ".")
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")
    sc.mount(None, "/", None, sc.MS_REMOUNT | RO)
    return [p for p in [*view.binds, *view.packages] if _under(p, [SCRATCH])]


def mount_scratch(options: str, under: list[str]) -> None:
    """In a sandbox's own mount namespace: a fresh tmpfs on /tmp, with the paths `enter` found
    under /tmp bound again, read-only, inside it (as root; the program cannot remove them)."""
    fds = [os.open(p, os.O_PATH | os.O_CLOEXEC) for p in under]  # this namespace's copies
    sc.mount("tmpfs", SCRATCH, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, options)
    for p, fd in zip(under, fds):
        _bind(fd, _target("", p, _isdir(fd)), RO)
        os.close(fd)
