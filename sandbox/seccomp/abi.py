"""What the seccomp compiler needs to know about the host ABI, asked of libseccomp.

Syscall names and numbers come from libseccomp's table for the native arch;
arch tokens and action encodings come from pyseccomp (libseccomp's SCMP_ARCH_*
and SCMP_ACT_* equal the kernel's AUDIT_ARCH_* and SECCOMP_RET_*).  The x32
syscall bit is derived from libseccomp's x32 table, so no kernel number is
written down here.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

import pyseccomp

# Data half of a seccomp return value (SECCOMP_RET_DATA): the errno for ERRNO.
RET_DATA = pyseccomp.ERRNO(-1) & ~pyseccomp.ERRNO(0)
# The kernel caps errno values it will return (MAX_ERRNO in linux/err.h).
MAX_ERRNO = 4095


@functools.cache
def _lib() -> ctypes.CDLL:
    """Our own handle on libseccomp, for the two calls pyseccomp does not type."""
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp"))
    lib.seccomp_syscall_resolve_name_arch.argtypes = (ctypes.c_uint32, ctypes.c_char_p)
    lib.seccomp_syscall_resolve_name_arch.restype = ctypes.c_int

    class _Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    lib.seccomp_version.restype = ctypes.POINTER(_Version)
    return lib


@functools.cache
def libseccomp_version() -> tuple[int, int, int]:
    version = _lib().seccomp_version().contents
    return (version.major, version.minor, version.micro)


@functools.cache
def native_arch() -> int:
    """AUDIT_ARCH_* token of the arch this process runs on."""
    return pyseccomp.system_arch()


def syscall_number(name: str, arch: int | None = None) -> int | None:
    """Number of syscall ``name`` on ``arch`` (default native), or None if that
    arch has no such syscall (libseccomp returns negative pseudo-numbers for
    syscalls that exist only on other arches)."""
    nr = _lib().seccomp_syscall_resolve_name_arch(arch or native_arch(), name.encode())
    return nr if nr >= 0 else None


def syscall_exists_somewhere(name: str) -> bool:
    """True if libseccomp knows ``name`` on some arch (it hands out negative
    pseudo-numbers below -1 for syscalls the native arch lacks; -1 means unknown)."""
    return _lib().seccomp_syscall_resolve_name_arch(native_arch(), name.encode()) != -1


@functools.cache
def syscall_table() -> dict[str, int]:
    """Every syscall libseccomp knows for the native arch: name -> number."""
    table = {}
    for nr in range(0, 2048):
        try:
            name = pyseccomp.resolve_syscall(native_arch(), nr)
        except ValueError:
            continue
        table[name.decode()] = nr
    return table


@functools.cache
def syscall_names() -> dict[int, str]:
    return {nr: name for name, nr in syscall_table().items()}


@functools.cache
def x32_syscall_bit() -> int | None:
    """The bit x32 sets in syscall numbers (__X32_SYSCALL_BIT), if the native
    arch is x86_64; derived from libseccomp's x32 and x86_64 tables."""
    if native_arch() != pyseccomp.Arch.X86_64:
        return None
    x32_read = syscall_number("read", pyseccomp.Arch.X32)
    native_read = syscall_number("read")
    if x32_read is None or native_read is None:
        return None
    return x32_read - native_read


def foreign_arches() -> tuple[int, ...]:
    """Arch tokens a native-arch process could still enter the kernel with
    (compat ABIs), which the filter must reject."""
    compat = {
        pyseccomp.Arch.X86_64: (pyseccomp.Arch.X86, pyseccomp.Arch.X32),
        pyseccomp.Arch.AARCH64: (pyseccomp.Arch.ARM,),
        pyseccomp.Arch.S390X: (pyseccomp.Arch.S390,),
        pyseccomp.Arch.PPC64LE: (pyseccomp.Arch.PPC64, pyseccomp.Arch.PPC),
    }
    return compat.get(native_arch(), ())


def errno_of(ret: int) -> int | None:
    """The errno of an ERRNO return value, or None for other actions."""
    if ret & ~RET_DATA == pyseccomp.ERRNO(0):
        return ret & RET_DATA
    return None
