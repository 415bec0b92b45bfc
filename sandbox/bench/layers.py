"""Cold spawn-and-wait, layer by layer, beside other isolation tools.

The ladder turns sandbox layers on cumulatively, from a plain subprocess to
the default Config; every rung and every other tool runs once per round in a
rotating order (spawn_bench.interleave), and each rung's ratio to the plain
process and to the rung below is computed round by round."""
from __future__ import annotations

import shutil
import subprocess

import sandbox

from .scripts import spawn_bench

# (rung name, layers it adds, what it isolates).  caps/no_new_privs/session come
# with the user namespace: together they are "no privileges".
LADDER = (
    ("+ pid/mount/ipc/uts", {"pid", "mount", "ipc", "uts"}, "pid, mount, ipc, uts namespaces"),
    ("+ network", {"net"}, "+ net namespace (loopback up)"),
    ("+ user", {"user", "cgroupns", "caps", "no_new_privs", "session"},
     "+ user and cgroup namespaces, every capability dropped, no_new_privs, setsid"),
    ("+ new root", {"rootfs"}, "+ minimal read-only root, pivot_root"),
    ("+ seccomp", {"seccomp"}, "+ default seccomp policy"),
    ("+ cgroups", {"cgroups"}, "+ memory/cpu/pids cgroups (= the default Config)"),
)
PLAIN = "plain process (subprocess)"
OTHER_TOOLS = ("bwrap", "unshare", "crun", "runc", "firejail")
OTHER_ISOLATION = {
    "bwrap": "all 7 namespaces, no_new_privs, tmpfs root with ro binds; no seccomp, no cgroups",
    "unshare": "unshare -Urpmnfiu --mount-proc: user, pid, mount, net, ipc, uts namespaces; "
               "full caps inside; no new root, no seccomp, no cgroups",
    "crun": "OCI default spec: pid, net, ipc, uts, mount ns; pivot_root; no seccomp; cgroups",
    "runc": "OCI default spec: pid, net, ipc, uts, mount ns; pivot_root; no seccomp; cgroups",
    "firejail": "pid, mount, ipc, uts ns; same net ns; no seccomp by default with --noprofile",
}


def ladder_configs():
    """[(rung, Config)] with layers turned on cumulatively."""
    on, out = set(), []
    for rung, layers, _ in LADDER:
        on |= layers
        off = frozenset(set(sandbox.LAYERS) - on)
        # Without the new root the payload runs from the host's tree, where the
        # real Python lives under /root (0700): map the sandbox uid to host uid 0
        # on those rungs so it can exec.  It still holds no capability.
        host = {} if "rootfs" in on else {"host_uid": 0, "host_gid": 0}
        out.append((rung, sandbox.Config(disable=off, **host)))
    return out


def _unshare_argv(payload):
    return ["unshare", "-Urpmnfiu", "--mount-proc", "--"] + payload


def make_runners(payload):
    """{row name: callable} for one payload, and {row: isolation or 'not installed'}."""
    devnull = subprocess.DEVNULL
    runners = {PLAIN: lambda: subprocess.run(payload, stdin=devnull)}
    for rung, config in ladder_configs():
        runners[rung] = lambda c=config: sandbox.spawn(payload, c, stdin=sandbox.DEVNULL).wait()
    status = {}
    for tool in OTHER_TOOLS:
        if not shutil.which(tool):
            status[tool] = "not installed"
            continue
        status[tool] = OTHER_ISOLATION[tool]
        if tool == "bwrap":
            argv = spawn_bench().bwrap_argv(payload)
        elif tool == "unshare":
            argv = _unshare_argv(payload)
        else:
            status[tool] = "installed, not run (needs an OCI bundle / profile; see baselines.md)"
            continue
        runners[tool] = lambda a=argv: subprocess.run(a, stdin=devnull, stdout=devnull, stderr=devnull)
    return runners, status


def measure(rounds: int, warmup: int) -> dict:
    sb = spawn_bench()
    payloads = {"/bin/true": ["/bin/true"], "python -c pass": [sb.PYTHON, "-c", "pass"]}
    out = {"rounds": rounds, "warmup": warmup, "payloads": {}, "isolation": {}, "rungs": [PLAIN] + [r for r, _, _ in LADDER]}
    out["isolation"][PLAIN] = "none"
    for rung, _, what in LADDER:
        out["isolation"][rung] = what
    for label, payload in payloads.items():
        runners, status = make_runners(payload)
        out["isolation"].update(status)
        times = sb.interleave(runners, rounds, warmup)
        rows = {}
        previous = None
        for name, ts in times.items():
            row = {**sb.spread(ts), "vs_plain": sb.paired_ratio(ts, times[PLAIN])}
            if name in out["rungs"] and previous is not None:
                row["vs_previous"] = sb.paired_ratio(ts, times[previous])
            if name in out["rungs"]:
                previous = name
            rows[name] = row
        for tool in OTHER_TOOLS:
            if tool not in rows:
                rows[tool] = {"skipped": status[tool]}
        out["payloads"][label] = {"rows": rows, "raw_ms": times}
    return out
