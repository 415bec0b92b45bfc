"""Demo: real isolated runs, each one checked from inside the sandbox.

Run with `bash scripts/demo.sh` (it installs what it needs first)."""
import os
import sys
import time

import sandbox

PROBE = r"""
import os, json, socket
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
def can(fn):
    try: fn(); return True
    except OSError: return False
print(json.dumps({
    "pid": os.getpid(), "uid": os.getuid(), "hostname": socket.gethostname(),
    "caps_effective": status["CapEff"].strip(), "no_new_privs": status["NoNewPrivs"].strip(),
    "seccomp_mode": status["Seccomp"].strip(), "root_entries": sorted(os.listdir("/")),
    "host_shadow_visible": os.path.exists("/etc/shadow"),
    "can_write_usr": can(lambda: open("/usr/x", "w")),
    "can_unshare_userns": can(lambda: os.unshare(os.CLONE_NEWUSER)) if hasattr(os, "unshare") else "n/a",
    "visible_pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "interfaces": sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]),
}, indent=1))
"""


def section(title):
    print(f"\n== {title}")


def main():
    cfg = sandbox.Config()
    section("a Python probe, full isolation, default limits")
    r = sandbox.run(["python3", "-c", PROBE], cfg)
    print(r.stdout.decode().strip())
    print(f"exit={r.exit_code} wall={r.wall_time_s * 1e3:.1f} ms cpu={r.cpu_time_s * 1e3:.1f} ms "
          f"peak={r.memory_peak_bytes and r.memory_peak_bytes // 1024} KiB")

    section("a memory bomb under a 64 MB limit")
    r = sandbox.run(["python3", "-c", "x = bytearray(256 << 20)"], sandbox.Config(memory_mb=64))
    print(f"signal={r.signal} oom_killed={r.oom_killed} peak={r.memory_peak_bytes and r.memory_peak_bytes >> 20} MiB")

    section("a fork bomb under a 32-process limit")
    r = sandbox.run(["sh", "-c", "b(){ b|b& }; b; sleep 1; echo survived"], sandbox.Config(pids=32, timeout_s=5))
    print(f"exit={r.exit_code} signal={r.signal} timed_out={r.timed_out} (host unaffected)")

    section("an endless loop under a 1 s wall-clock limit")
    r = sandbox.run(["python3", "-c", "while True: pass"], sandbox.Config(timeout_s=1))
    print(f"timed_out={r.timed_out} signal={r.signal} wall={r.wall_time_s:.2f} s")

    section("a denied syscall: mount")
    r = sandbox.run(["python3", "-c", "import ctypes,os; l=ctypes.CDLL(None,use_errno=True); "
                     "print(l.mount(b'none',b'/tmp',b'tmpfs',0,None), os.strerror(ctypes.get_errno()))"], cfg)
    print(r.stdout.decode().strip())

    section("100 spawn-and-wait of /bin/true")
    start = time.perf_counter()
    for _ in range(100):
        sandbox.run(["/bin/true"], cfg, capture_output=False)
    print(f"{(time.perf_counter() - start) * 10:.2f} ms per isolated run (full isolation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
