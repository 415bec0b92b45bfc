"""unpriv_driver: run ON THE HOST by an unprivileged uid (catalogue #41).

tests/kernel/test_isolation_unprivileged.py starts it through setpriv (uid and
gid 65534, no groups, no capabilities).  It runs the same probes as the root
suite and prints one JSON object: {probe: {"exit": .., "out": .., "error": ..}}.

The default Config is tried first and reported as is; the probes then run with
every layer on except "cgroups" when (and only when) the default failed with
CgroupSetupError -- on cgroup v1 an unprivileged user cannot create cgroups
unless a subtree was delegated to it."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sandbox  # noqa: E402
from probes.harness import PROBES, host_status, last_json, probe_argv  # noqa: E402

SYSCALLS = ["unshare_user", "unshare_user_mnt_cgroup", "clone_newuser", "clone3", "setns", "mount_efault",
            "chroot", "ptrace_attach", "process_vm_readv", "keyctl", "add_key", "bpf_prog_load",
            "userfaultfd", "io_uring_setup", "perf_event_open", "open_by_handle_at"]


def run(config, script, *args):
    try:
        result = sandbox.run(probe_argv(script, *args), config)
    except sandbox.SandboxError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"exit": result.returncode, "out": last_json(result.stdout),
            "stderr": result.stderr[-2000:].decode(errors="replace")}


def host_view(config):
    with sandbox.spawn(probe_argv("inspect_self.py", "--wait"), config, stdin=sandbox.PIPE,
                       stdout=sandbox.PIPE, stderr=sandbox.DEVNULL) as box:
        box.stdout.readline()
        status = host_status(box.pid)
        box.stdin.write(b"\n")
        box.stdin.flush()
        box.stdout.read()
    return {"Uid": status["Uid"], "Gid": status["Gid"]}


def main():
    binds = [f"{PROBES}:/probes"]
    report = {"caller": {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
                         "CapEff": host_status(os.getpid())["CapEff"]}}
    report["default"] = run(sandbox.Config.create(binds=binds), "inspect_self.py")
    disable = ["cgroups"] if "CgroupSetupError" in report["default"].get("error", "") else []
    config = sandbox.Config.create(binds=binds, disable=disable)
    report["disabled"] = disable
    report["inspect"] = run(config, "inspect_self.py")
    report["syscalls"] = run(config, "try_syscall.py", *SYSCALLS)
    report["create"] = run(config, "fs_probe.py", "create", "/", "/usr", "/etc", "/probes")
    report["sockets"] = run(config, "net_probe.py", "sockets")
    report["host_view"] = host_view(config)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
