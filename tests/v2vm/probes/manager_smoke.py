"""Run inside the v2 VM (leaf layout): the cgroup manager on a real cgroup-v2 kernel, from a
non-root cgroup, as on a systemd host.

Our own cgroup (/test/runner) holds processes, so it cannot delegate: opening the manager on
it must fail clearly; with delegated_root=$V2VM_CGROUP_PARENT (/test, which delegates
memory/pids/cpu) it must work. Prints key=value lines for tests/kernel/test_cgroup_v2_vm.py.
"""
import os

from sandbox.cgroups import CgroupLimits, detect_cgroups, open_manager
from sandbox.errors import CgroupSetupError

host = detect_cgroups()
print(f"version={host.version}")
print(f"own={host.unified_path}")
try:
    open_manager(host, name_prefix="v2vmprobe", reaper=False)
    print("own_cgroup=accepted")
except CgroupSetupError as exc:
    print(f"own_cgroup=refused: {exc}")

try:
    manager = open_manager(host, name_prefix="v2vmprobe", delegated_root=os.environ["V2VM_CGROUP_PARENT"])
    cg = manager.create(CgroupLimits(memory_bytes=64 << 20, cpus=0.5, pids_max=16))
    (path,) = cg.dirs
    print(f"sandbox_cgroup={path}")
    with open(os.path.join(path, "memory.max")) as f:
        print(f"memory_max={f.read().strip()}")
    with open(os.path.join(path, "pids.max")) as f:
        print(f"pids_max={f.read().strip()}")
    cg.destroy()
    manager.close()
    print(f"left={int(os.path.exists(path) or os.path.exists(os.path.dirname(path)))}")
    print("manager=ok")
except Exception as exc:  # report it to the host-side test
    print(f"error={type(exc).__name__}: {exc}")
