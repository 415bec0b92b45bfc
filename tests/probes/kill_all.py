"""kill_all: fork a few children, then kill(-1, SIGKILL) (catalogue #21).
Reports how each child ended; the caller checks nothing outside was hit."""
import os
import signal
import time

import probelib as P


def main():
    children = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children.append(pid)
    err = P.try_call(os.kill, -1, signal.SIGKILL)
    ends = {}
    for pid in children:
        _, status = os.waitpid(pid, 0)
        ends[pid] = os.waitstatus_to_exitcode(status)
    P.emit({"kill": err, "children": ends, "survivor": os.getpid()})


if __name__ == "__main__":
    main()
