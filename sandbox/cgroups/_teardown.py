"""Kill every process in cgroup directories and remove the directories.

Standard library only, no package-relative imports: the reaper runs this file's
code with `python -S -I`, where the sandbox package is not importable.  The
supervisor's backends use the same functions, so both paths behave alike.

`rmdir` is a seam: unit tests pass a fake that understands their temporary
cgroup tree.
"""
import errno
import os
import signal
import time

# O_TRUNC is harmless on cgroupfs and keeps plain-file test doubles exact.
_WRITE = os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC
# cgroupfs says EBUSY for a cgroup with tasks or children; a plain directory
# with children (the reaper's unit tests) says ENOTEMPTY.
_BUSY = (errno.EBUSY, errno.ENOTEMPTY)


def write_file(path, data):
    fd = os.open(path, _WRITE)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_text(path):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks).decode()
            chunks.append(chunk)
    finally:
        os.close(fd)


def read_pids(directory):
    """Pids in <directory>/cgroup.procs; [] if the directory is gone."""
    try:
        return [int(tok) for tok in read_text(os.path.join(directory, "cgroup.procs")).split()]
    except FileNotFoundError:
        return []


def subtree(directory):
    """`directory` and every cgroup below it, deepest first (rmdir order)."""
    out = []
    for dirpath, _dirs, _files in os.walk(directory, topdown=False):
        out.append(dirpath)
    return out or [directory]


def member_pids(directories):
    pids = set()
    for top in directories:
        for d in subtree(top):
            pids.update(read_pids(d))
    return pids


def signal_members(directories):
    """SIGKILL every process listed in the cgroup.procs of `directories` and
    their descendants.  Each pid is pinned with a pidfd first and signalled only
    if it is still listed afterwards, so a pid reused by an unrelated process in
    between is never hit.  Returns how many processes were signalled."""
    pids = member_pids(directories)
    if not pids:
        return 0
    pidfds = {}
    try:
        for pid in pids:
            try:
                pidfds[pid] = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            except (AttributeError, OSError):
                pidfds[pid] = None  # no pidfd support: plain kill below
        still = member_pids(directories)
        sent = 0
        for pid, pidfd in pidfds.items():
            if pid not in still:
                continue
            try:
                if pidfd is None:
                    os.kill(pid, signal.SIGKILL)
                else:
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                sent += 1
            except ProcessLookupError:
                pass
        return sent
    finally:
        for pidfd in pidfds.values():
            if pidfd is not None:
                os.close(pidfd)


def _wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    delay = 0.0002
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    return True


def kill_v1(directories, freezer_dir=None, timeout=1.0):
    """One kill pass over v1 sandbox directories.  With a freezer directory the
    group is frozen first so nothing can fork or exit while pids are collected,
    then killed, then thawed (a v1-frozen task only dies once thawed)."""
    if freezer_dir is None or not member_pids([freezer_dir]):
        return signal_members(directories)
    state = os.path.join(freezer_dir, "freezer.state")
    write_file(state, b"FROZEN")
    try:
        _wait_for(lambda: read_text(state).strip() == "FROZEN", timeout)
        return signal_members(directories)
    finally:
        write_file(state, b"THAWED")


def kill_v2(directory, cgroup_kill=True, timeout=1.0):
    """Kill everything in a v2 cgroup subtree: cgroup.kill (Linux 5.14+) does it
    in the kernel, including tasks forked meanwhile; otherwise freeze, kill, thaw."""
    if cgroup_kill and os.path.exists(os.path.join(directory, "cgroup.kill")):
        write_file(os.path.join(directory, "cgroup.kill"), b"1")
        return
    freeze = os.path.join(directory, "cgroup.freeze")
    if not os.path.exists(freeze) or not member_pids([directory]):
        signal_members([directory])
        return
    write_file(freeze, b"1")
    try:
        events = os.path.join(directory, "cgroup.events")
        _wait_for(lambda: "frozen 1" in read_text(events), timeout)
        signal_members([directory])
    finally:
        write_file(freeze, b"0")


def remove_dirs(directories, kill_pass, timeout=5.0, rmdir=os.rmdir):
    """rmdir every directory; while one is busy (live tasks, or child cgroups the
    sandbox made) run `kill_pass(busy_dirs)`, remove children deepest first, and
    retry with backoff until `timeout`.  Missing directories are fine.  Raises
    OSError(EBUSY, ..., first busy dir) if the time runs out."""
    deadline = time.monotonic() + timeout
    delay = 0.0002
    remaining = list(directories)
    while True:
        busy = []
        for d in remaining:
            try:
                rmdir(d)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno not in _BUSY:
                    raise
                busy.append(d)
        if not busy:
            return
        if time.monotonic() > deadline:
            raise OSError(errno.EBUSY, "cgroup still busy after kill", busy[0])
        kill_pass(busy)
        for d in busy:
            for child in subtree(d)[:-1]:
                try:
                    rmdir(child)
                except OSError:
                    pass
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
        remaining = busy
