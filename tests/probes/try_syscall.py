"""try_syscall SCENARIO... : run each named attempt inside the sandbox and print
{scenario: errno name or "OK"} (bubblewrap's try-syscall, with named cases).

Arguments are chosen so that an ALLOWED call gives a distinctive result (OK,
EFAULT, EBADF, ENOKEY, ...) while a DENIED one gives EPERM/ENOSYS, so a test
can tell "the policy blocked it" from "the kernel refused the arguments".
Nothing here can harm the host if it unexpectedly succeeds: bad magic for
reboot, NULL time for clock_settime, no-op keyring lookups.
"""
import ctypes
import os
import signal
import sys
import time

import probelib as P
import syscall_table as T

_target = None


def target_pid() -> int:
    """A sleeping child of ours, same uid: the easiest possible ptrace target."""
    global _target
    if _target is None:
        pid = os.fork()
        if pid == 0:
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            time.sleep(60)
            os._exit(0)
        _target = pid
    return _target


def _clone(flags: int) -> str:
    """Raw clone(flags|SIGCHLD) without CLONE_VM: like fork if it succeeds."""
    ret, err = P.syscall("clone", flags | signal.SIGCHLD, 0, 0, 0, 0)
    if ret == 0:
        os._exit(0)
    if ret > 0:
        os.waitpid(ret, 0)
    return P.errname(err)


def _unshare(*names: str) -> str:
    flags = 0
    for name in names:
        flags |= T.CLONE_NEW_FLAGS[name]
    ret, err = P.syscall("unshare", flags)
    if ret == 0:
        return "OK"
    return P.errname(err)


def _perf_event_open() -> str:
    attr = ctypes.create_string_buffer(T.PERF_ATTR_SIZE)
    ctypes.c_uint32.from_buffer(attr, 0).value = T.PERF_TYPE_SOFTWARE
    ctypes.c_uint32.from_buffer(attr, 4).value = T.PERF_ATTR_SIZE
    ctypes.c_uint64.from_buffer(attr, 8).value = T.PERF_COUNT_SW_TASK_CLOCK
    ctypes.c_uint64.from_buffer(attr, T.PERF_ATTR_FLAGS_OFFSET).value = (
        T.PERF_FLAG_EXCLUDE_KERNEL | T.PERF_FLAG_EXCLUDE_HV)
    return P.try_syscall("perf_event_open", attr, 0, -1, -1, 0)


def _pidfd_getfd() -> str:
    pidfd, err = P.syscall("pidfd_open", target_pid(), 0)
    if err:
        pidfd = -1  # allowed pidfd_getfd would then say EBADF
    try:
        return P.try_syscall("pidfd_getfd", pidfd, 0, 0)
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def _process_vm_readv() -> str:
    buf = ctypes.create_string_buffer(8)
    local = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 8)
    remote = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 8)  # same layout after fork
    return P.try_syscall("process_vm_readv", target_pid(), local, 1, remote, 1, 0)


def _ptrace_attach() -> str:
    ret, err = P.syscall("ptrace", T.PTRACE_ATTACH, target_pid(), 0, 0)
    return P.errname(err)


def _open_by_handle_at() -> str:
    handle = ctypes.create_string_buffer(128)
    ctypes.c_uint32.from_buffer(handle, 0).value = 120   # handle_bytes
    ctypes.c_int32.from_buffer(handle, 4).value = 1      # handle_type (FILEID_INO32_GEN)
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        return P.try_syscall("open_by_handle_at", fd, handle, os.O_RDONLY)
    finally:
        os.close(fd)


def _zeroed(n: int):
    return ctypes.create_string_buffer(n)


SCENARIOS = {
    # 14 / 22: new namespaces, joining namespaces, mounting
    **{f"unshare_{ns}": (lambda ns=ns: _unshare(ns)) for ns in T.CLONE_NEW_FLAGS},
    "unshare_user_mnt_cgroup": lambda: _unshare("user", "mnt", "cgroup"),
    **{f"clone_new{ns}": (lambda ns=ns: _clone(T.CLONE_NEW_FLAGS[ns])) for ns in T.CLONE_NEW_FLAGS},
    "clone3": lambda: P.try_syscall("clone3", None, 0),            # allowed: EINVAL (size 0)
    "setns": lambda: P.try_syscall("setns", -1, 0),                 # allowed: EBADF
    "mount_efault": lambda: P.try_syscall("mount", 1, 1, 1, 0, 1),  # allowed: EFAULT
    "mount_tmpfs": lambda: P.try_syscall("mount", b"tmpfs", b"/tmp", b"tmpfs", 0, None),
    "mount_cgroup": lambda: P.try_syscall("mount", b"cgroup", b"/tmp", b"cgroup", 0, b"memory"),
    "mount_cgroup2": lambda: P.try_syscall("mount", b"cgroup2", b"/tmp", b"cgroup2", 0, None),
    "fsopen": lambda: P.try_syscall("fsopen", b"tmpfs", 0),
    "open_tree": lambda: P.try_syscall("open_tree", -100, b"/", T.OPEN_TREE_CLONE),
    "pivot_root": lambda: P.try_syscall("pivot_root", b".", b"."),
    # 33
    "chroot": lambda: P.try_syscall("chroot", b"/tmp"),
    # 15
    "open_by_handle_at": _open_by_handle_at,
    # 19
    "keyctl": lambda: P.try_syscall("keyctl", T.KEYCTL_GET_KEYRING_ID, T.KEY_SPEC_SESSION_KEYRING, 1),
    "add_key": lambda: P.try_syscall("add_key", b"user", b"sbx-probe", b"x", 1, T.KEY_SPEC_PROCESS_KEYRING),
    "request_key": lambda: P.try_syscall("request_key", b"user", b"sbx-none", None, 0),  # allowed: ENOKEY
    # 20
    "userfaultfd": lambda: P.try_syscall("userfaultfd", os.O_CLOEXEC | os.O_NONBLOCK | T.UFFD_USER_MODE_ONLY),
    # 23
    "io_uring_setup": lambda: P.try_syscall("io_uring_setup", 1, _zeroed(120)),
    "io_uring_enter": lambda: P.try_syscall("io_uring_enter", -1, 0, 0, 0, None, 0),  # allowed: EBADF
    "io_uring_register": lambda: P.try_syscall("io_uring_register", -1, 0, None, 0),  # allowed: EBADF
    # 24
    "perf_event_open": _perf_event_open,
    # 25
    "kexec_load": lambda: P.try_syscall("kexec_load", 0, 0, None, 0),
    "kexec_file_load": lambda: P.try_syscall("kexec_file_load", -1, -1, 0, None, 0),
    "init_module": lambda: P.try_syscall("init_module", None, 0, b""),
    "finit_module": lambda: P.try_syscall("finit_module", -1, b"", 0),
    "delete_module": lambda: P.try_syscall("delete_module", b"sbx_none", 0),
    "reboot": lambda: P.try_syscall("reboot", 0, 0, 0, None),       # bad magic: EINVAL if ever allowed
    "swapon": lambda: P.try_syscall("swapon", b"/nonexistent", 0),
    "swapoff": lambda: P.try_syscall("swapoff", b"/nonexistent"),
    "acct": lambda: P.try_syscall("acct", None),
    "settimeofday": lambda: P.try_syscall("settimeofday", None, None),
    "clock_settime": lambda: P.try_syscall("clock_settime", 0, None),  # allowed: EFAULT
    # 26
    "bpf_prog_load": lambda: P.try_syscall("bpf", T.BPF_PROG_LOAD, _zeroed(128), 128),
    "bpf_map_create": lambda: P.try_syscall("bpf", T.BPF_MAP_CREATE, _zeroed(128), 128),
    # 3 / 21
    "ptrace_attach": _ptrace_attach,
    "process_vm_readv": _process_vm_readv,
    "pidfd_getfd": _pidfd_getfd,
    "kcmp": lambda: P.try_syscall("kcmp", os.getpid(), target_pid(), T.KCMP_FILE, 0, 0),
}


def main(names):
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        sys.exit(f"unknown scenario(s): {unknown}")
    results = {name: SCENARIOS[name]() for name in names}
    if _target is not None:
        os.kill(_target, signal.SIGKILL)
        os.waitpid(_target, 0)
    P.emit(results)


if __name__ == "__main__":
    main(sys.argv[1:])
