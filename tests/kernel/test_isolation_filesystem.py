"""The sandbox's filesystem, from inside: a read-only root, a private bounded
/tmp, nothing of the host's /etc, /home, /root or /var, a minimal /dev, a
masked /proc with read-only /proc/sys, and no shared mount propagation."""
import os
import stat
import tempfile

import pytest

from probes.harness import expect_probe
from sandbox.host import detect

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("no_leaks")]

MiB = 1 << 20
PYTHON_PREFIXES = detect().python.prefixes
REFUSED_WRITE = {"EROFS", "EACCES"}
# Device binds and /proc masks are character devices: the only rw mounts
# besides /tmp and /proc itself.
DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9)}
DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2"}
HOST_PROC_MASKED = [name for name in (
    "kcore", "kmsg", "keys", "key-users", "kallsyms", "timer_list", "timer_stats", "sched_debug",
    "latency_stats", "kpagecount", "kpageflags", "kpagecgroup", "vmallocinfo", "config.gz", "slabinfo",
    "pagetypeinfo", "iomem", "ioports", "dma") if os.path.exists(f"/proc/{name}")]


@pytest.mark.parametrize("directory", ["/", "/usr", "/usr/bin", "/usr/lib", "/etc", "/dev", "/probes",
                                       *PYTHON_PREFIXES, *(os.path.join(p, "bin") for p in PYTHON_PREFIXES)])
def test_cannot_create_files_outside_tmp(probe_config, directory):
    out = expect_probe(probe_config(), "fs_probe.py", "create", directory)
    assert out[directory] in REFUSED_WRITE, f"creating a file in {directory}: {out[directory]}"


def test_existing_files_cannot_be_opened_for_writing(probe_config):
    python = os.path.realpath(detect().python.executable)
    paths = ["/etc/passwd", "/etc/hostname", "/etc/hosts", "/usr/bin/env", python, "/probes/probelib.py"]
    out = expect_probe(probe_config(), "fs_probe.py", "open_write", *paths)
    bad = {p: e for p, e in out.items() if e not in REFUSED_WRITE | {"ETXTBSY"}}
    assert not bad, f"opened for writing: {bad}"


def test_every_mount_is_read_only_except_tmp_proc_and_devices(probe_config):
    mounts = expect_probe(probe_config(), "inspect_self.py")["mounts"]
    writable = []
    for m in mounts:
        device_bind = m["fstype"] == "devtmpfs" and m["root"].lstrip("/") in DEVICES
        if m["mountpoint"] in ("/tmp", "/proc") or device_bind:
            continue
        if "ro" not in m["options"]:
            writable.append((m["mountpoint"], m["fstype"], m["options"]))
    assert not writable, f"writable mounts: {writable}"


def test_every_mount_is_nosuid_and_only_device_binds_allow_devices(probe_config):
    mounts = expect_probe(probe_config(), "inspect_self.py")["mounts"]
    for m in mounts:
        assert "nosuid" in m["options"], m
        device_bind = m["fstype"] == "devtmpfs" and m["root"].lstrip("/") in DEVICES
        if not device_bind:
            assert "nodev" in m["options"], m


def test_tmp_is_writable_and_private(probe_config):
    with tempfile.NamedTemporaryFile(dir="/tmp", prefix="sbx-host-secret-") as secret:
        name = os.path.basename(secret.name)
        out = expect_probe(probe_config(), "fs_probe.py", "create", "/tmp")
        assert out["/tmp"] == "OK"
        listing = expect_probe(probe_config(), "fs_probe.py", "listdir", "/tmp")["/tmp"]
    assert name not in listing, "the host's /tmp is visible inside"


def test_tmp_is_bounded_by_tmp_size(probe_config):
    out = expect_probe(probe_config(tmp_size_mb=8, memory_mb=128), "fs_probe.py", "fill", "/tmp")
    assert out["errno"] == "ENOSPC", out
    assert out["total"] == 8 * MiB, out
    assert 7 * MiB <= out["written"] <= 8 * MiB, out


@pytest.mark.parametrize("path", ["/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/ssh", "/home", "/var",
                                  "/sys", "/boot", "/mnt", "/opt", "/srv", "/run", "/media", "/work",
                                  "/root/.bash_history", "/root/.ssh", "/lost+found"])
def test_host_path_is_absent(probe_config, path):
    out = expect_probe(probe_config(), "fs_probe.py", "exists", path)
    assert out[path] is False, f"{path} is visible inside"


def test_root_holds_only_the_path_to_the_python_install(probe_config):
    """The interpreter is bound at its host path (e.g. /root/.pyenv/...): the
    directories on the way exist inside, empty but for that path."""
    out = expect_probe(probe_config(), "fs_probe.py", "listdir", "/", "/root", "/etc")
    needed = {}
    for prefix in PYTHON_PREFIXES:
        parts = prefix.strip("/").split("/")
        for i in range(len(parts) - 1):
            needed.setdefault("/" + "/".join(parts[:i + 1]), set()).add(parts[i + 1])
    expected_root = {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "probes", "proc", "sbin", "tmp", "usr"}
    expected_root |= {prefix.strip("/").split("/")[0] for prefix in PYTHON_PREFIXES}
    assert set(out["/"]) <= expected_root, set(out["/"]) - expected_root
    if isinstance(out["/root"], list):
        assert set(out["/root"]) <= needed.get("/root", set()), out["/root"]
    assert set(out["/etc"]) == {"group", "hostname", "hosts", "nsswitch.conf", "passwd", "resolv.conf"}, out["/etc"]


def test_etc_passwd_is_generated_not_the_hosts(probe_config):
    out = expect_probe(probe_config(), "fs_probe.py", "read", "/etc/passwd")["/etc/passwd"]
    users = {line.split(":")[0] for line in out["head"].splitlines()}
    assert users == {"root", "sbx_user", "nobody"}, users


def test_dev_has_only_harmless_devices(probe_config):
    dev = expect_probe(probe_config(), "inspect_self.py")["dev"]
    assert set(dev) == set(DEVICES) | set(DEV_LINKS), sorted(dev)
    for name, numbers in DEVICES.items():
        assert dev[name] == {"chr": list(numbers)}, (name, dev[name])
    for name, target in DEV_LINKS.items():
        assert dev[name] == {"link": target}, (name, dev[name])


@pytest.mark.parametrize("name", HOST_PROC_MASKED)
def test_sensitive_proc_file_reads_empty(probe_config, name):
    path = f"/proc/{name}"
    out = expect_probe(probe_config(), "fs_probe.py", "read", path)[path]
    assert out in ("EACCES", "EPERM", "ENOENT") or out["len"] == 0, f"{path}: {out}"


def test_sensitive_proc_dirs_are_empty(probe_config):
    dirs = [f"/proc/{d}" for d in ("acpi", "scsi", "asound", "driver") if os.path.exists(f"/proc/{d}")]
    out = expect_probe(probe_config(), "fs_probe.py", "listdir", *dirs)
    assert all(v == [] or v in ("EACCES", "ENOENT") for v in out.values()), out


def test_proc_sys_is_read_only(probe_config):
    out = expect_probe(probe_config(), "fs_probe.py", "write", "/proc/sys/kernel/core_pattern", "|/tmp/x")
    assert out["open"] in REFUSED_WRITE, out
    mounts = expect_probe(probe_config(), "inspect_self.py")["mounts"]
    proc_sys = [m for m in mounts if m["mountpoint"] == "/proc/sys"]
    assert proc_sys and "ro" in proc_sys[-1]["options"], proc_sys


def test_no_mount_is_shared_with_the_host(probe_config):
    mounts = expect_probe(probe_config(), "inspect_self.py")["mounts"]
    tagged = [(m["mountpoint"], m["optional"]) for m in mounts
              if any(tag.startswith(("shared:", "master:")) for tag in m["optional"])]
    assert not tagged, f"mounts with propagation to or from the host: {tagged}"


def test_host_cannot_see_sandbox_files_in_its_tmp(probe_config):
    before = set(os.listdir("/tmp"))
    expect_probe(probe_config(), "fs_probe.py", "create", "/tmp")
    assert ".sbx-probe-created" not in set(os.listdir("/tmp")) - before
    assert stat.S_ISDIR(os.stat("/tmp").st_mode)


def test_proc_is_a_fresh_procfs(probe_config):
    """#4: /proc is a proc mount of its own (the sandbox's pid namespace), not
    a bind of the host's and not reached through a symlink."""
    mounts = expect_probe(probe_config(), "inspect_self.py")["mounts"]
    proc = [m for m in mounts if m["mountpoint"] == "/proc"]
    assert len(proc) == 1 and proc[0]["fstype"] == "proc" and proc[0]["root"] == "/", proc
    assert {"nosuid", "nodev", "noexec"} <= set(proc[0]["options"]), proc
