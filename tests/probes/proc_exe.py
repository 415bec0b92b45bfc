"""proc_exe: try to open every visible /proc/*/exe for writing (catalogue #1,
CVE-2019-5736) and describe the mount that holds the executable."""
import os
import signal

import probelib as P


def main():
    child = os.fork()
    if child == 0:
        signal.pause()
        os._exit(0)
    report = {"exes": {}}
    try:
        for entry in sorted(os.listdir("/proc")):
            if not entry.isdigit():
                continue
            path = f"/proc/{entry}/exe"
            report["exes"][entry] = {
                "target": os.readlink(path),
                "O_WRONLY": P.try_call(lambda: os.close(os.open(path, os.O_WRONLY))),
                "O_RDWR": P.try_call(lambda: os.close(os.open(path, os.O_RDWR))),
                "O_WRONLY|O_APPEND": P.try_call(lambda: os.close(os.open(path, os.O_WRONLY | os.O_APPEND))),
            }
        exe = os.readlink("/proc/self/exe")
        report["self_exe"] = exe
        report["open_real_path_for_writing"] = P.try_call(lambda: os.close(os.open(exe, os.O_WRONLY)))
        best = None
        for m in P.mountinfo():
            mp = m["mountpoint"]
            if exe == mp or exe.startswith(mp.rstrip("/") + "/"):
                if best is None or len(mp) >= len(best["mountpoint"]):
                    best = m
        report["exe_mount"] = best
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    P.emit(report)


if __name__ == "__main__":
    main()
