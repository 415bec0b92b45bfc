"""Namespaces: which to create (clone flags) and the uid/gid maps the parent
writes after the clone."""
from __future__ import annotations

import os
from dataclasses import dataclass

from .config import Config
from .constants import kernel_constant as K
from .errors import HostUnsupportedError
from .host import HostFeatures

NOBODY = 65534

# layer name -> (clone flag name, /proc/self/ns entry)
_NAMESPACES = {
    "mount": ("CLONE_NEWNS", "mnt"),
    "pid": ("CLONE_NEWPID", "pid"),
    "net": ("CLONE_NEWNET", "net"),
    "ipc": ("CLONE_NEWIPC", "ipc"),
    "uts": ("CLONE_NEWUTS", "uts"),
    "user": ("CLONE_NEWUSER", "user"),
}


@dataclass(frozen=True)
class NamespacePlan:
    clone_flags: int
    user_ns: bool
    cgroup_ns: bool      # unshared by the child after it joined its cgroup
    uid_map: str         # written to /proc/PID/uid_map by the parent ("" if no userns)
    gid_map: str
    deny_setgroups: bool # unprivileged callers must deny setgroups before gid_map
    host_uid: int        # who the sandboxed process is on the host
    host_gid: int


def plan_namespaces(config: Config, host: HostFeatures) -> NamespacePlan:
    flags = 0
    for layer, (flag, ns) in _NAMESPACES.items():
        if not config.enabled(layer):
            continue
        if ns not in host.namespaces:
            raise HostUnsupportedError(0, f"{ns} namespaces are not available on this kernel",
                                       hint=f"disable the '{layer}' layer by name to run without it")
        flags |= K(flag)
    user_ns = config.enabled("user")
    if user_ns and not host.user_namespaces:
        raise HostUnsupportedError(0, "user namespaces are disabled on this host",
                                   hint="enable them (sysctl user.max_user_namespaces) or disable the 'user' layer")
    if not host.privileged and not user_ns and flags:
        raise HostUnsupportedError(0, "creating namespaces needs root or a user namespace",
                                   hint="keep the 'user' layer on")
    if config.enabled("cgroupns") and "cgroup" not in host.namespaces:
        raise HostUnsupportedError(0, "cgroup namespaces are not available",
                                   hint="disable the 'cgroupns' layer")
    if host.privileged:
        host_uid = NOBODY if config.host_uid is None else config.host_uid
        host_gid = NOBODY if config.host_gid is None else config.host_gid
    else:
        host_uid, host_gid = host.euid, host.egid
        if config.host_uid not in (None, host_uid) or config.host_gid not in (None, host_gid):
            raise HostUnsupportedError(0, "only root can choose host_uid/host_gid")
    uid_map = gid_map = ""
    if user_ns:
        uid_map = f"{config.uid} {host_uid} 1\n"
        gid_map = f"{config.gid} {host_gid} 1\n"
    return NamespacePlan(
        clone_flags=flags,
        user_ns=user_ns,
        cgroup_ns=config.enabled("cgroupns"),
        uid_map=uid_map,
        gid_map=gid_map,
        deny_setgroups=user_ns and not host.privileged,
        host_uid=host_uid,
        host_gid=host_gid,
    )


def write_id_maps_in_parent(plan: NamespacePlan, pid: int) -> None:
    """Write the child's uid/gid maps (it waits for them before any setup)."""
    if not plan.user_ns:
        return
    if plan.deny_setgroups:
        _write(f"/proc/{pid}/setgroups", "deny")
    _write(f"/proc/{pid}/uid_map", plan.uid_map)
    _write(f"/proc/{pid}/gid_map", plan.gid_map)


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
