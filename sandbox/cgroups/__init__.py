"""Sandbox cgroups: memory (no swap), CPU quota and pids limits plus accounting,
on cgroup v1 or v2, chosen by detection.  See docs/cgroups.md.

    host = detect_cgroups()                  # frozen CgroupHost
    manager = open_manager(host)             # one per supervisor; thread-safe
    cg = manager.create(CgroupLimits(memory_bytes=256 << 20, cpus=1.0, pids_max=64))
    ... spawn with cg.procs_fds (v1) or cg.clone_fd (v2) ...
    cg.release_attach_fds()
    cg.stats(); cg.kill(); cg.destroy()
    manager.close()                          # also at exit; a reaper covers SIGKILL

Modules: limits (the frozen inputs/outputs and the pure write plans), parse
(control-file and /proc parsers), host (detection), v1 / v2 (backends with the
same verbs), manager (lifecycle), reaper (watchdog process), _teardown (kill and
rmdir, shared with the reaper).
"""
from .host import CgroupHost, detect_cgroups
from .limits import CgroupLimits, CgroupStats
from .manager import CgroupManager, SandboxCgroup, open_manager

__all__ = ["CgroupHost", "CgroupLimits", "CgroupStats", "CgroupManager", "SandboxCgroup", "detect_cgroups",
           "open_manager"]
