"""bombs KIND ARGS...: resource exhaustion payloads.

  memory             allocate and touch 1 MiB blocks until killed
  forkbomb SECONDS   every process forks as fast as it can; pid 1 exits after SECONDS
  forkcount          fork sleeping children until fork fails -> {"forked": n, "errno": ..}
  busy SECONDS       spin on the CPU for SECONDS of wall time -> {"loops": n}
  sleep SECONDS      sleep
"""
import os
import signal
import sys
import time

import probelib as P


def memory():
    blocks = []
    while True:
        blocks.append(bytearray(b"\x5a") * (1 << 20))


def forkbomb(seconds):
    deadline = time.monotonic() + seconds
    leader = os.getpid()
    while True:
        if os.getpid() == leader and time.monotonic() > deadline:
            P.emit({"bomb": "done"})
            os._exit(0)
        try:
            os.fork()
        except OSError:
            time.sleep(0.01)


def forkcount():
    forked, err = 0, "none"
    while forked < 100000:
        try:
            pid = os.fork()
        except OSError as exc:
            err = P.errname(exc.errno)
            break
        if pid == 0:
            signal.pause()
            os._exit(0)
        forked += 1
    return {"forked": forked, "errno": err}


def busy(seconds):
    loops = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        loops += 1
    return {"loops": loops}


def main(kind, args):
    if kind == "memory":
        memory()
    elif kind == "forkbomb":
        forkbomb(float(args[0]))
    elif kind == "forkcount":
        P.emit(forkcount())
    elif kind == "busy":
        P.emit(busy(float(args[0])))
    elif kind == "sleep":
        time.sleep(float(args[0]))
    else:
        sys.exit(f"unknown kind {kind!r}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
