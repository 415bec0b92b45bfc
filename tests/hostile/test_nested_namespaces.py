"""#22 nested user namespaces and friends, #14 cgroup v1 release_agent:
no new namespaces, no joining others, no mounts, clone3 says ENOSYS, and no
cgroup filesystem is reachable."""
import pytest

from probes.harness import expect_probe
from probes.syscall_table import CLONE_NEW_FLAGS

pytestmark = [pytest.mark.hostile, pytest.mark.usefixtures("no_leaks")]

DENIED = {"EPERM", "ENOSYS"}


def attempt(probe_config, *scenarios):
    return expect_probe(probe_config(), "try_syscall.py", *scenarios)


@pytest.mark.parametrize("ns", sorted(CLONE_NEW_FLAGS))
def test_unshare_fails(probe_config, ns):
    assert attempt(probe_config, f"unshare_{ns}")[f"unshare_{ns}"] in DENIED


@pytest.mark.parametrize("ns", sorted(CLONE_NEW_FLAGS))
def test_clone_with_namespace_flag_fails(probe_config, ns):
    assert attempt(probe_config, f"clone_new{ns}")[f"clone_new{ns}"] in DENIED


def test_14_unshare_user_mount_cgroup_together_fails(probe_config):
    assert attempt(probe_config, "unshare_user_mnt_cgroup")["unshare_user_mnt_cgroup"] in DENIED


def test_clone3_is_enosys(probe_config):
    """clone3 keeps its flags in memory a filter cannot read: ENOSYS, so libc
    falls back to the filtered clone."""
    assert attempt(probe_config, "clone3")["clone3"] == "ENOSYS"


def test_setns_fails(probe_config):
    assert attempt(probe_config, "setns")["setns"] in DENIED


@pytest.mark.parametrize("scenario", ["mount_efault", "mount_tmpfs", "mount_cgroup", "mount_cgroup2", "fsopen",
                                      "open_tree", "pivot_root"])
def test_mounting_fails(probe_config, scenario):
    assert attempt(probe_config, scenario)[scenario] in DENIED


def test_14_no_cgroup_filesystem_or_release_agent_reachable(probe_config):
    inside = expect_probe(probe_config(), "inspect_self.py")
    cgroupfs = [m["mountpoint"] for m in inside["mounts"] if m["fstype"] in ("cgroup", "cgroup2")]
    assert not cgroupfs, f"cgroup filesystems mounted inside: {cgroupfs}"
    assert "sys" not in inside["root"], "/sys is present inside"
    out = expect_probe(probe_config(), "fs_probe.py", "exists", "/sys/fs/cgroup", "/sys/fs/cgroup/release_agent")
    assert not any(out.values()), out
