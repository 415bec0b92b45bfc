"""`sandbox doctor`: which isolation features this host offers, probed for real."""
from __future__ import annotations

from .host import detect


def report() -> tuple[list[dict], bool]:
    host = detect()
    items = []

    def add(feature, ok, detail):
        items.append({"feature": feature, "ok": bool(ok), "detail": detail})

    add("kernel", True, host.kernel)
    add("privilege", host.privileged or host.user_namespaces,
        "root (CAP_SYS_ADMIN)" if host.privileged else
        ("unprivileged, user namespaces allowed" if host.user_namespaces else "unprivileged, no user namespaces"))
    add("user namespaces", host.user_namespaces, f"max_user_namespaces={host.max_user_namespaces}")
    for ns in ("mnt", "pid", "net", "ipc", "uts", "cgroup", "user"):
        add(f"{ns} namespace", ns in host.namespaces, "/proc/self/ns/" + ns)
    add("seccomp filter", host.seccomp_filter, "SECCOMP_SET_MODE_FILTER")
    add("capabilities", True, f"last capability number {host.last_cap}")
    from .capabilities import supervisor_can_set_no_new_privs

    add("prctl", supervisor_can_set_no_new_privs(), "PR_GET_NO_NEW_PRIVS answers (python-prctl)")
    try:
        from .cgroups import detect_cgroups

        cg = detect_cgroups()
        add("cgroups", True, cg.describe())
    except Exception as exc:  # report, never crash: doctor exists for broken hosts
        add("cgroups", False, str(exc))
    try:
        from .seccomp import load_policy

        policy = load_policy("default")
        add("default seccomp policy", True, f"{policy.instructions} BPF instructions")
    except Exception as exc:
        add("default seccomp policy", False, str(exc))
    add("python", True, host.python.executable)
    try:
        from .launcher import run

        result = run(["/bin/true"])
        add("isolated run of /bin/true", result.exit_code == 0, f"exit {result.returncode}, {result.wall_time_s * 1e3:.1f} ms")
    except Exception as exc:
        add("isolated run of /bin/true", False, f"{type(exc).__name__}: {exc}")
    return items, all(i["ok"] for i in items)
