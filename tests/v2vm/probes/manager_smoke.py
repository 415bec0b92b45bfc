"""Run inside the v2 VM: the cgroup manager on a real cgroup-v2 kernel, from a non-root cgroup.

Prints key=value lines for tests/kernel/test_cgroup_v2_vm.py; exits non-zero on failure.
Uses only the API documented in sandbox/cgroups/__init__.py.
"""
import os
import sys

from sandbox.cgroups import CgroupLimits, detect_cgroups, open_manager

host = detect_cgroups()
print(f"version={host.version}")
print(f"own={host.unified_path}")
print(f"delegated={','.join(sorted(host.delegated))}")
try:
    manager = open_manager(host)
    cg = manager.create(CgroupLimits(memory_bytes=64 << 20, cpus=0.5, pids_max=16))
    (path,) = cg.dirs
    with open(os.path.join(path, "memory.max")) as f:
        print(f"memory_max={f.read().strip()}")
    with open(os.path.join(path, "pids.max")) as f:
        print(f"pids_max={f.read().strip()}")
    cg.destroy()
    manager.close()
    print(f"left={int(os.path.exists(path))}")
except Exception as exc:  # report, then fail
    print(f"error={type(exc).__name__}: {exc}")
    sys.exit(1)
print("manager=ok")
