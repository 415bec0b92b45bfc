"""Pre-made sandboxes.

A *shell* is a sandbox cloned and set up up to the point where it needs the
command: namespaces created, cgroup joined, root built and pivoted into,
hostname and loopback set.  It then waits on a control socket.  Launching sends
argv, exec candidates and the stdio fds; the shell drops privileges, loads
seccomp and execs.  Preparing shells in the background keeps namespace
creation, the mount work and the cgroup v1 migration (which can wait ~7 ms for
an RCU grace period) off the spawn path.

Each shell serves exactly one launch and belongs to one plan (one Config):
never shared between configurations, never reused."""
from __future__ import annotations

import collections
import errno
import os
import signal
import threading
import time
from dataclasses import dataclass

from ._core import ffi, lib
from .config import MiB
from .errors import NamespaceError, NetworkError, SpawnError
from .namespaces import write_id_maps_in_parent


@dataclass
class Shell:
    pid: int
    pidfd: int
    error_fd: int
    control_fd: int
    cgroup: object | None
    # The clone's stack in our memory (it shares it until it execs the shell
    # program, csrc/shell_start.c); (0, 0) when there is none or it was released.
    stack: tuple[int, int] = (0, 0)

    def release_stack(self) -> None:
        """Unmap the clone's stack: only once the child exec'd or was reaped."""
        addr, length = self.stack
        self.stack = (0, 0)
        if addr:
            lib.sbx_release_stack(addr, length)

    def discard(self) -> None:
        """Kill, reap and release everything this unlaunched shell holds."""
        for fd in (self.control_fd, self.error_fd):
            if fd >= 0:
                os.close(fd)
        self.control_fd = self.error_fd = -1
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        self.release_stack()
        os.close(self.pidfd)
        if self.cgroup is not None:
            self.cgroup.destroy()
            self.cgroup = None


def sandbox_cgroup(config, supervisor):
    """The cgroup a new sandbox of `config` joins (None with the layer off),
    made before the clone: limits exist before the child can allocate."""
    if not config.enabled("cgroups"):
        return None
    from .cgroups import CgroupLimits

    return supervisor.cgroups.create(CgroupLimits(memory_bytes=config.memory_mb * MiB, cpus=config.cpus,
                                                  pids_max=config.pids, io=config.io))


def release_shell(shell: Shell, encoded, sync_fd: int) -> Shell:
    """Write the new sandbox's uid/gid maps and let it go on with its setup
    (it waits for them: files it creates need a mapped owner).  Discards the
    shell on failure; closes sync_fd either way."""
    try:
        try:
            write_id_maps_in_parent(encoded.plan.namespaces, shell.pid)
        except OSError as exc:
            raise NamespaceError(exc.errno or errno.EIO, f"write uid/gid map of {shell.pid}", "id-maps") from exc
        os.write(sync_fd, b"\x01")
    except BaseException:
        shell.discard()
        raise
    finally:
        os.close(sync_fd)
    return shell


def prepare_shell(encoded, supervisor) -> Shell:
    """Clone a shell for `encoded` (an EncodedPlan) and release it into setup."""
    cgroup = sandbox_cgroup(encoded.plan.config, supervisor)
    netns, joined, shell = None, False, None
    try:
        if encoded.plan.network.join:  # egress / netns: cloned into an existing namespace
            from .net.manager import join_target

            netns = join_target(encoded.plan.network, supervisor)
        cplan, keep = encoded.for_prepare(cgroup.procs_fds if cgroup else (), cgroup.clone_fd if cgroup else -1,
                                          netns.fd if netns else -1)
        out = ffi.new("struct sbx_spawn *")
        rc = supervisor.clone_thread.call(lambda: lib.sbx_spawn(cplan, out))
        if rc < 0 and out.stage == lib.SBX_STAGE_NETNS_JOIN:
            raise NetworkError(-rc, "(netns-join) setns into the network namespace to clone into", "netns-join")
        if rc < 0:
            raise SpawnError(-rc, "clone3")
        # From here a process exists: any failure below must end it.
        shell = Shell(out.pid, out.pidfd, out.error_fd, out.control_fd, cgroup, (out.stack_addr, out.stack_len))
        if netns is not None:
            netns.spawned(out.pidfd)  # egress: released when this process exits
            joined = True
    except BaseException:
        if shell is not None:
            os.close(out.sync_fd)   # the child waiting for its id maps sees the end of file
            shell.discard()         # kill, reap, unmap its stack, destroy its cgroup
        elif cgroup is not None:
            cgroup.destroy()
        if netns is not None and not joined:
            netns.failed()
        raise
    finally:
        if cgroup is not None:
            cgroup.release_attach_fds()
    return release_shell(shell, encoded, out.sync_fd)


class ShellPool:
    """Keeps shells ready per recently used plan, as many as its demand asks:
    `size` at first; a take that finds none doubles the plan's target (up to
    `max_size`: a burst of spawns), and every `decay_s` without such a miss
    lowers it by one again, discarding a shell beyond it (back to `size`)."""

    def __init__(self, supervisor, size: int = 2, max_plans: int = 8, max_size: int = 8,
                 decay_s: float = 30.0):
        self._supervisor = supervisor
        self.size = size
        self.max_size = max(size, max_size)
        self.decay_s = decay_s
        self._max_plans = max_plans
        self._ready: collections.OrderedDict = collections.OrderedDict()
        self._pending: collections.Counter = collections.Counter()
        self._seen: collections.OrderedDict = collections.OrderedDict()
        self._targets: dict = {}        # plan -> (target, monotonic time of the last miss or decay step)
        self._lock = threading.Lock()
        self._closed = False
        self.failures = 0

    def target(self, encoded) -> int:
        """How many shells this plan keeps ready now."""
        with self._lock:
            return self._targets.get(encoded, (self.size, 0.0))[0]

    def take(self, encoded) -> Shell | None:
        extra = None
        now = time.monotonic()
        with self._lock:
            shells = self._ready.get(encoded)
            target, since = self._targets.get(encoded, (self.size, now))
            if not shells:
                # More demand than was ready (a burst): grow -- for plans the
                # pool already pre-makes for (replenish() made their entry).
                if encoded in self._targets:
                    self._targets[encoded] = (min(self.max_size, max(1, target) * 2), now)
                return None
            if target > self.size and now - since >= self.decay_s:
                target, since = target - 1, now          # quiet for decay_s: one step back
                if len(shells) - 1 > target:              # what this take leaves, at most the target
                    extra = shells.pop()
            if encoded in self._targets:
                self._targets[encoded] = (target, since)
            self._ready.move_to_end(encoded)
            shell = shells.popleft()
        if extra is not None:
            extra.discard()
        return shell

    def replenish(self, encoded) -> None:
        """Schedule background preparation up to the target size for this plan."""
        if self.size <= 0:
            return
        with self._lock:
            if self._closed:
                return
            # Pre-make only for plans used more than once: a one-off run (the
            # CLI, a unique config) would only pay for shells nobody takes.
            if encoded not in self._seen:
                self._seen[encoded] = True
                if len(self._seen) > 4 * self._max_plans:
                    self._seen.popitem(last=False)
                return
            self._seen.move_to_end(encoded)
            if encoded not in self._targets and len(self._targets) >= 4 * self._max_plans:
                self._targets.pop(next(iter(self._targets)))   # bounded, as _seen is
            target = self._targets.setdefault(encoded, (self.size, time.monotonic()))[0]
            have = len(self._ready.get(encoded, ())) + self._pending[encoded]
            missing = target - have
            self._pending[encoded] += max(0, missing)
        for _ in range(missing):
            self._supervisor.clone_thread.submit(lambda: self._fill(encoded))

    def _fill(self, encoded) -> None:
        try:
            shell = prepare_shell(encoded, self._supervisor)
        except Exception:
            # The next spawn prepares synchronously and reports the error itself.
            with self._lock:
                self._pending[encoded] -= 1
                self.failures += 1
            return
        evicted = []
        with self._lock:
            self._pending[encoded] -= 1
            if self._closed:
                evicted.append(shell)
            else:
                self._ready.setdefault(encoded, collections.deque()).append(shell)
                self._ready.move_to_end(encoded)
                while len(self._ready) > self._max_plans:
                    plan, old = self._ready.popitem(last=False)
                    self._targets.pop(plan, None)
                    evicted.extend(old)
        for old in evicted:
            old.discard()

    def drain(self) -> None:
        """Discard every ready shell (waits for preparations in flight)."""
        self._supervisor.clone_thread.barrier()
        with self._lock:
            shells = [s for q in self._ready.values() for s in q]
            self._ready.clear()
        for shell in shells:
            shell.discard()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.drain()
