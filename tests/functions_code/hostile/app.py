"""Handlers that attack their own execution environment (tests/hostile/test_functions_hostile.py).

Every function made from this package answers {"do": "ping"} with "pong", so a
test can check that the invocation after an attack works."""
import os
import signal
import sys
import threading
import time


def _fds():
    return sorted(int(fd) for fd in os.listdir("/proc/self/fd"))


def _pipes(mode):
    """Descriptors of pipes open for reading (mode "r") or writing ("w")."""
    found = []
    for fd in _fds():
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            with open(f"/proc/self/fdinfo/{fd}") as f:
                info = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if not target.startswith("pipe:"):
            continue
        access = int(info["flags"].strip(), 8) & 3
        if (mode == "r" and access == os.O_RDONLY) or (mode == "w" and access == os.O_WRONLY):
            found.append(fd)
    return found


def exit_now(event):
    os._exit(event.get("status", 0))


def self_kill(event):
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(5)
    return "survived SIGKILL"


def spin(event):
    while True:
        pass


def hog(event):
    chunks = []
    while True:
        chunks.append(bytearray(16 << 20))


def fork_bomb(event):
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.01)


def close_fds(event):
    os.closerange(3, 1024)
    return "closed"


def scribble(event):
    """Writes garbage to every descriptor it has, the channel included."""
    garbage = b"\xff\x00garbage\x00" * 64
    hit = []
    for fd in _fds():
        try:
            os.write(fd, garbage)
            hit.append(fd)
        except OSError:
            pass
    return {"written": hit}


def forge(event):
    """Writes a well-formed RESULT frame on the response channel, then answers
    (after `delay`).  With "with_id", the frame carries this request's id, as
    a real answer does."""
    import struct

    body = b'"forged"'
    if event.get("with_id"):
        body = CONTEXT.aws_request_id.encode() + body
    for fd in _pipes("w"):
        if fd > 2:
            os.write(fd, struct.pack("<BBxxI", 0xA5, ord("R"), len(body)) + body)
    time.sleep(event.get("delay", 0))  # lets the supervisor take the forged frame alone
    return "real"


def flood(event):
    chunk = "z" * (1 << 20)
    for _ in range(event.get("mb", 1024)):
        sys.stdout.write(chunk)
    return "flooded"


def daemon(event):
    """Leaves a process behind that outlives the invocation and ignores SIGTERM/SIGHUP."""
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        devnull = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        while True:
            # Written aside and renamed: a reader never sees the file truncated but not yet written.
            with open("/tmp/heartbeat.new", "w") as f:
                f.write(str(time.time()))
            os.rename("/tmp/heartbeat.new", "/tmp/heartbeat")
            time.sleep(0.02)
    os.waitpid(pid, 0)
    time.sleep(0.1)
    return "daemonized"


def heartbeat(event):
    try:
        with open("/tmp/heartbeat") as f:
            return {"age": time.time() - float(f.read())}
    except (OSError, ValueError):
        return {"age": None}


def steal_now(event):
    """Reads the request channel in the handler itself: there is nothing to
    read (the runtime already took this request), so it blocks until killed."""
    for fd in _pipes("r"):
        if fd > 2:
            os.read(fd, 1 << 20)
    return "stole"


def steal_next(event):
    """Leaves a thread that reads the request channel: it takes the next request."""
    def thief(fd):
        while True:
            try:
                if not os.read(fd, 1 << 20):
                    return
            except OSError:
                return

    for fd in _pipes("r"):
        if fd > 2:
            threading.Thread(target=thief, args=(fd,), daemon=True).start()
    return "thief started"


def forge_later(event):
    """Returns, then a thread writes a well-formed answer frame carrying this
    request's id on the response channel while the environment is idle."""
    import struct

    body = CONTEXT.aws_request_id.encode() + b'"forged"'
    frame = struct.pack("<BBxxI", 0xA5, ord("R"), len(body)) + body

    def write():
        for fd in _pipes("w"):
            if fd > 2:
                os.write(fd, frame)
    threading.Timer(0.05, write).start()
    return "armed"


def exit_in_thread_later(event):
    """Returns, then the process exits while idle between invocations."""
    threading.Timer(0.05, lambda: os._exit(7)).start()
    return "armed"


def close_stdout(event):
    os.close(1)
    os.close(2)
    return "closed stdout"


def huge_error(event):
    raise ValueError("e" * (7 << 20))


def deep(event):
    value = []
    for _ in range(100000):
        value = [value]
    return value


CONTEXT = None


def handler(event, context):
    global CONTEXT
    CONTEXT = context
    action = event.get("do", "ping")
    if action == "ping":
        return "pong"
    return globals()[action](event)
