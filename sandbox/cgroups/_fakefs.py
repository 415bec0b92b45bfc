"""Test double: a temporary directory that behaves enough like cgroupfs for the
unit tests (no root, no kernel).  Not used by the library itself.

- mkdir creates the control files of the hierarchy the directory is in, with
  the kernel's initial contents;
- rmdir removes them, and fails with EBUSY like the kernel while a child
  cgroup exists or cgroup.procs is non-empty;
- build_v1_tree / build_v2_tree lay out mount points and own cgroups and return
  the /proc/self/cgroup and /proc/self/mountinfo texts that describe them.

Never put a real pid into a fake cgroup.procs: the kill path signals them.
"""
from __future__ import annotations

import errno
import os

V1_FILES = {
    "memory": {
        "memory.limit_in_bytes": "9223372036854771712\n",
        "memory.memsw.limit_in_bytes": "9223372036854771712\n",
        "memory.max_usage_in_bytes": "0\n",
        "memory.memsw.max_usage_in_bytes": "0\n",
        "memory.usage_in_bytes": "0\n",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        "memory.swappiness": "60\n",
    },
    "cpu": {"cpu.cfs_period_us": "100000\n", "cpu.cfs_quota_us": "-1\n", "cpu.shares": "1024\n"},
    "cpuacct": {"cpuacct.usage": "0\n"},
    "pids": {"pids.max": "max\n", "pids.current": "0\n"},
    "freezer": {"freezer.state": "THAWED\n"},
    "blkio": {f"blkio.throttle.{k}_device": "" for k in ("read_bps", "write_bps", "read_iops", "write_iops")},
    "devices": {},
}
V1_COMMON = {"cgroup.procs": "", "tasks": "", "notify_on_release": "0\n", "cgroup.clone_children": "0\n"}

V2_FILES = {
    "cgroup.procs": "",
    "cgroup.controllers": "",
    "cgroup.subtree_control": "",
    "cgroup.kill": "",
    "cgroup.freeze": "0\n",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "memory.max": "max\n",
    "memory.swap.max": "max\n",
    "memory.oom.group": "0\n",
    "memory.peak": "0\n",
    "memory.current": "0\n",
    "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    "cpu.max": "max 100000\n",
    "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
    "pids.max": "max\n",
    "pids.current": "0\n",
    "io.max": "",
}


def populate(directory: str, files: dict[str, str]) -> None:
    for name, content in files.items():
        with open(os.path.join(directory, name), "w") as f:
            f.write(content)


class FakeCgroupFs:
    """mkdir/rmdir with cgroupfs behaviour for directories below `mounts`
    ({mount point: control files})."""

    def __init__(self, mounts: dict[str, dict[str, str]]):
        self.mounts = {os.path.abspath(k): v for k, v in mounts.items()}
        self.calls: list[tuple[str, str]] = []

    def _files(self, path: str) -> dict[str, str]:
        path = os.path.abspath(path)
        best = max((m for m in self.mounts if path.startswith(m + "/")), key=len, default=None)
        if best is None:
            raise OSError(errno.ENOENT, "not below a fake cgroup mount", path)
        return self.mounts[best]

    def mkdir(self, path, mode=0o777):
        self.calls.append(("mkdir", path))
        files = self._files(path)
        os.mkdir(path, mode)
        populate(path, files)

    def rmdir(self, path):
        self.calls.append(("rmdir", path))
        if not os.path.isdir(path):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        with os.scandir(path) as it:
            entries = list(it)
        if any(e.is_dir(follow_symlinks=False) for e in entries):
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        procs = os.path.join(path, "cgroup.procs")
        if os.path.exists(procs) and open(procs).read().strip():
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        for e in entries:
            os.unlink(e.path)
        os.rmdir(path)


def build_v1_tree(root: str, *, own: dict[str, str] | None = None, comount_cpu: bool = False,
                  memsw: bool = True, freezer: bool = True, blkio: bool = False):
    """A v1 layout like this project's host below `root`.  Returns
    (proc_cgroup_text, mountinfo_text, FakeCgroupFs)."""
    own = own or {"memory": "/process_api/abc"}
    hierarchies = [("memory",), ("pids",), ("devices",)]
    hierarchies += [("cpu", "cpuacct")] if comount_cpu else [("cpu",), ("cpuacct",)]
    if freezer:
        hierarchies.append(("freezer",))
    if blkio:
        hierarchies.append(("blkio",))
    cg_lines, mi_lines, mounts = [], [], {}
    for n, ctrls in enumerate(hierarchies, start=2):
        name = ",".join(ctrls)
        mp = f"/sys/fs/cgroup/{name}"
        files = dict(V1_COMMON)
        for c in ctrls:
            files.update(V1_FILES[c])
        if not memsw:
            files = {k: v for k, v in files.items() if ".memsw." not in k}
        mounts[root + mp] = files
        path = own.get(ctrls[0], "/")
        os.makedirs(root + mp + path, exist_ok=True)
        populate(root + mp + path, files)
        cg_lines.append(f"{n}:{name}:{path}")
        mi_lines.append(f"{30 + n} 31 0:{30 + n} / {mp} rw,relatime - cgroup cgroup rw,{name}")
    cg_lines.append("1:name=systemd:/")
    cg_lines.append("0::/")
    mi_lines.append("41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw")
    os.makedirs(root + "/sys/fs/cgroup/unified", exist_ok=True)
    populate(root + "/sys/fs/cgroup/unified", {"cgroup.controllers": "hugetlb\n", "cgroup.subtree_control": ""})
    mi_lines.insert(0, "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755")
    return "\n".join(reversed(cg_lines)) + "\n", "\n".join(mi_lines) + "\n", FakeCgroupFs(mounts)


def build_v2_tree(root: str, *, own: str = "/", controllers: str = "cpuset cpu io memory hugetlb pids",
                  subtree: str = "cpu memory pids", files_missing: tuple[str, ...] = ()):
    """A pure cgroup2 layout below `root`; our own cgroup is `own`."""
    mp = root + "/sys/fs/cgroup"
    files = {k: v for k, v in V2_FILES.items() if k not in files_missing}
    own_dir = mp + own.rstrip("/")
    os.makedirs(own_dir, exist_ok=True)
    populate(own_dir, {**files, "cgroup.controllers": controllers + "\n", "cgroup.subtree_control": subtree + "\n"})
    cg = f"0::{own}\n"
    mi = ("24 1 0:22 / /sys rw,nosuid - sysfs sysfs rw\n"
          "31 24 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate\n")
    return cg, mi, FakeCgroupFs({mp: files})
