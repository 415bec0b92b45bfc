"""daemon HEARTBEAT_FILE [--stay]: leave a classic daemon behind.

The daemon double-forks, calls setsid, ignores SIGHUP and SIGTERM, closes its
stdio and rewrites HEARTBEAT_FILE with an increasing counter every 20 ms.  The
command itself exits once the first heartbeat is written (or, with --stay,
sleeps, so it can be killed from outside)."""
import os
import signal
import sys
import time

import probelib as P


def daemon(path):
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    beat = 0
    while True:
        beat += 1
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(f"{beat} {os.getpid()}\n")
        os.rename(tmp, path)
        time.sleep(0.02)


def main(path, stay):
    pid = os.fork()
    if pid == 0:
        daemon(path)
    os.waitpid(pid, 0)  # the first child exits at once; the grandchild is orphaned
    deadline = time.monotonic() + 10
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    P.emit({"daemon": os.path.exists(path)})
    if stay:
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1], "--stay" in sys.argv[2:])
