"""Helpers for probes that run INSIDE the sandbox (standard library only).

A probe prints exactly one JSON object as the last line of stdout; the test on
the host parses it with tests/probes/harness.py.  Errors are reported as errno
names ("EPERM"), 0 means the call succeeded.
"""
import ctypes
import errno
import json
import os
import sys

import syscall_table as T

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def emit(obj) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def errname(err: int) -> str:
    return "OK" if err == 0 else errno.errorcode.get(err, str(err))


def _arg(value):
    if value is None:
        return ctypes.c_void_p(None)
    if isinstance(value, int):
        return ctypes.c_long(value)
    if isinstance(value, bytes):
        return ctypes.c_char_p(value)
    return value  # a ctypes object (buffer, pointer)


def syscall(name: str, *args) -> tuple[int, int]:
    """Issue syscall `name` (by the table's number) -> (return value, errno)."""
    ctypes.set_errno(0)
    ret = _libc.syscall(ctypes.c_long(T.SYSCALLS[name]), *[_arg(a) for a in args])
    return ret, (ctypes.get_errno() if ret == -1 else 0)


def prctl(option: int, *args: int) -> int:
    ctypes.set_errno(0)
    ret = _libc.prctl(ctypes.c_int(option), *[ctypes.c_ulong(a) for a in (args + (0, 0, 0, 0))[:4]])
    if ret < 0:
        raise OSError(ctypes.get_errno(), "prctl")
    return ret


def prctl_get_int(option: int) -> int:
    """prctl(option, &value) for the getters that write an int (PR_GET_PDEATHSIG)."""
    value = ctypes.c_int(-1)
    if _libc.prctl(ctypes.c_int(option), ctypes.byref(value), ctypes.c_ulong(0), ctypes.c_ulong(0),
                   ctypes.c_ulong(0)) < 0:
        raise OSError(ctypes.get_errno(), "prctl")
    return value.value


def try_syscall(name: str, *args) -> str:
    """bubblewrap's try-syscall: the errno name of `name(*args)`, or "OK".
    A descriptor returned on success is closed."""
    ret, err = syscall(name, *args)
    if err == 0 and ret > 2:
        try:
            os.close(ret)
        except OSError:
            pass
    return errname(err)


def try_call(fn, *args) -> str:
    """The errno name of an OSError raised by fn(*args), or "OK"."""
    try:
        result = fn(*args)
    except OSError as exc:
        return errname(exc.errno or 0) if exc.errno else "OSError-without-errno"
    if hasattr(result, "close"):
        result.close()
    elif isinstance(result, int) and result > 2 and fn is os.open:
        os.close(result)
    return "OK"


def status_fields() -> dict:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def open_fds() -> dict:
    """fd -> readlink target for every fd open in this process (the listing's
    own descriptor excluded)."""
    dfd = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        names = os.listdir(dfd)
    finally:
        os.close(dfd)
    out = {}
    for name in names:
        if int(name) == dfd:
            continue
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
    return out


def mountinfo() -> list[dict]:
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.rstrip("\n").partition(" - ")
            fields = pre.split(" ")
            fstype, source, super_opts = (post.split(" ") + ["", "", ""])[:3]
            mounts.append({
                "id": fields[0], "root": fields[3], "mountpoint": fields[4],
                "options": fields[5].split(","), "optional": fields[6:],
                "fstype": fstype, "source": source, "super": super_opts.split(","),
            })
    return mounts
