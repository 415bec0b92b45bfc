"""What this host offers, detected once per process and never written into a
Config.  `sandbox doctor` prints it."""
from __future__ import annotations

import functools
import os
import platform
import sys
from dataclasses import dataclass

from ._core import lib


def _read(path: str, default: str = "") -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


@dataclass(frozen=True)
class PythonInstall:
    """The running interpreter, resolved through symlinks and shims."""

    executable: str      # real path of the binary
    prefixes: tuple[str, ...]  # install trees to bind read-only (outside /usr)
    bin_dir: str


@dataclass(frozen=True)
class HostFeatures:
    kernel: str
    euid: int
    egid: int
    privileged: bool             # CAP_SYS_ADMIN in the initial user namespace
    user_namespaces: bool        # creating a user namespace is allowed
    max_user_namespaces: int
    seccomp: bool
    seccomp_filter: bool
    last_cap: int
    namespaces: frozenset[str]   # kinds available in /proc/self/ns
    python: PythonInstall
    usr_merged: dict             # top-level host dirs: name -> symlink target or "" for a real dir

    def missing(self) -> list[str]:
        """Human-readable list of isolation features this host lacks."""
        out = []
        if not self.user_namespaces:
            out.append("user namespaces (max_user_namespaces is 0 or userns disabled)")
        for ns in ("pid", "mnt", "net", "ipc", "uts", "user", "cgroup"):
            if ns not in self.namespaces:
                out.append(f"{ns} namespace")
        if not self.seccomp_filter:
            out.append("seccomp filter mode")
        if not self.privileged and not self.user_namespaces:
            out.append("privilege to create namespaces (not root and no user namespaces)")
        return out


def _python_install() -> PythonInstall:
    exe = os.path.realpath(sys.executable)
    prefixes = []
    for prefix in (sys.base_prefix, sys.prefix, os.path.dirname(os.path.dirname(exe))):
        real = os.path.realpath(prefix)
        if real.startswith("/usr/") or real == "/usr" or real in prefixes:
            continue
        if any(real.startswith(p + "/") for p in prefixes):
            continue
        prefixes.append(real)
    return PythonInstall(exe, tuple(prefixes), os.path.dirname(exe))


def _top_level_dirs() -> dict:
    out = {}
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = "/" + name
        if os.path.islink(path):
            out[name] = os.readlink(path)
        elif os.path.isdir(path):
            out[name] = ""
    return out


def _has_cap_sys_admin() -> bool:
    status = _read("/proc/self/status")
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) & (1 << 21))
    return False


@functools.lru_cache(maxsize=1)
def detect() -> HostFeatures:
    max_userns = int(_read("/proc/sys/user/max_user_namespaces", "0") or 0)
    unpriv_clone = _read("/proc/sys/kernel/unprivileged_userns_clone", "1")
    status = _read("/proc/self/status")
    seccomp_field = any(line.startswith("Seccomp:") for line in status.splitlines())
    privileged = os.geteuid() == 0 and _has_cap_sys_admin()
    return HostFeatures(
        kernel=platform.release(),
        euid=os.geteuid(),
        egid=os.getegid(),
        privileged=privileged,
        user_namespaces=max_userns > 0 and (privileged or unpriv_clone != "0"),
        max_user_namespaces=max_userns,
        seccomp=seccomp_field,
        seccomp_filter=seccomp_field and os.path.exists("/proc/sys/kernel/seccomp/actions_avail"),
        last_cap=lib.sbx_last_cap(),
        namespaces=frozenset(os.listdir("/proc/self/ns")),
        python=_python_install(),
        usr_merged=_top_level_dirs(),
    )
