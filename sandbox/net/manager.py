"""Egress namespaces, made ahead of time and handed out once.

A *lease* is one network namespace the supervisor made: lo up, a veth whose
host end (sbxXXXXXXXX, .1 of a /30) stays in the host namespace and whose
sandbox end (eth0, .2) is inside, a default route via the host end, the
sandbox firewall (nft.sandbox_ruleset) and the rate limits (tc.py).  Making
one costs 13-20 ms of netlink work, so `NetworkManager` keeps `pool_size`
ready per NetworkOptions (from their second use on), made in the background.

A lease serves one sandbox and is never reused: its namespace has seen that
sandbox's traffic (conntrack entries, neighbour and socket state), and
proving it scrubbed would cost more than making a new one.  The lease is
released when the sandbox's first process exits (its pidfd is watched):
the host end of the veth is deleted, which takes the pair down at once, the
namespace descriptor is closed, and the address lock is released.

One thread, `sandbox-net`, does all of it: it alone ever steps into a
sandbox's namespace (nsfd.inside), and it keeps the host-namespace netlink
socket.  Nothing is named in /run/netns: if the supervisor dies, the kernel
destroys every namespace (and veth) whose last descriptor and process are
gone, and the janitor (host.py) removes the host table.
"""
from __future__ import annotations

import collections
import os
import queue
import selectors
import threading
from concurrent.futures import Future
from dataclasses import dataclass

from ..errors import NetworkError
from . import nft, nsfd, tc
from .addresses import Slot, SlotAllocator
from .host import HostNet
from .locks import LOCK_DIR, remove_dir_if_empty
from .options import SLOT_PREFIX, NetworkOptions

SANDBOX_DEVICE = "eth0"


@dataclass(eq=False)
class Lease:
    fd: int                  # the namespace (O_CLOEXEC); closed at release
    slot: Slot
    lock_fd: int
    options: NetworkOptions
    pidfd: int = -1          # the sandbox's first process, once attached


class NetworkManager:
    def __init__(self, pool_size: int = 2, max_options: int = 4, lock_dir: str = LOCK_DIR):
        self.pool_size = pool_size
        self.lock_dir = lock_dir
        self._max_options = max_options
        self._lock = threading.Lock()
        self._ready: collections.OrderedDict = collections.OrderedDict()
        self._pending: collections.Counter = collections.Counter()
        self._seen: collections.OrderedDict = collections.OrderedDict()
        self._attached: set[Lease] = set()
        self._allocators: dict[str, SlotAllocator] = {}
        self._host: HostNet | None = None
        self._ipr = None
        self._closed = False
        self.failures = 0
        self._broken: NetworkError | None = None
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._loop, name="sandbox-net", daemon=True)
        self._thread.start()

    # -- the network thread --------------------------------------------------------
    def _call(self, fn) -> Future:
        future: Future = Future()
        self._jobs.put((fn, future))
        os.write(self._wake_w, b"\0")
        return future

    def _loop(self) -> None:
        from pyroute2 import IPRoute

        try:
            self._ipr = IPRoute()  # opened here, in the host namespace; used by this thread only
        except OSError as exc:
            self._broken = NetworkError(exc.errno, "open a route netlink socket (pyroute2)", "netns-create")
        while True:
            keys = [key for key, _ in self._sel.select()]
            for key in keys:
                # Still this lease's registration?  A job or an earlier event of
                # this batch may have released it, and its pidfd number may be reused.
                if key.data is not None and self._sel.get_map().get(key.fd) is key:
                    self._sel.unregister(key.fd)
                    self._release(key.data)
            if any(key.data is None for key in keys) and not self._run_jobs():
                return

    def _run_jobs(self) -> bool:
        """Run every queued job; False when told to stop."""
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass
        while True:
            try:
                fn, future = self._jobs.get_nowait()
            except queue.Empty:
                return True
            if fn is None:
                future.set_result(None)
                return False
            try:
                if self._broken is not None:
                    raise self._broken
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

    # -- making a namespace (network thread) ----------------------------------------
    def _host_for(self, options: NetworkOptions) -> HostNet:
        if self._host is None:
            self._host = HostNet(self.lock_dir)
        self._host.add_range(options.address_range)
        return self._host

    def _link_exists(self, name: str) -> bool:
        return bool(self._ipr.link_lookup(ifname=name))

    def _make(self, options: NetworkOptions) -> Lease:
        """lo, veth, addresses, route, firewall, rate limits; all or nothing."""
        from pyroute2 import IPRoute

        self._host_for(options)
        alloc = self._allocators.get(options.address_range)
        if alloc is None:
            alloc = self._allocators[options.address_range] = SlotAllocator(options.address_range, self.lock_dir)
        slot, lock_fd = alloc.acquire(in_use=lambda s: self._link_exists(s.link))
        fd, made_link = -1, False
        try:
            fd = nsfd.new_netns()
            step = f"ip link add {slot.link} type veth peer {SANDBOX_DEVICE} (in the new namespace)"
            try:
                self._ipr.link("add", ifname=slot.link, kind="veth",
                               peer={"ifname": SANDBOX_DEVICE, "net_ns_fd": fd})
                made_link = True
                step = f"address {slot.host_ip}/{SLOT_PREFIX} on {slot.link}"
                index = self._ipr.link_lookup(ifname=slot.link)[0]
                self._ipr.addr("add", index=index, address=slot.host_ip, prefixlen=SLOT_PREFIX)
                self._ipr.link("set", index=index, state="up")
            except OSError as exc:
                raise NetworkError(exc.errno, step, "veth") from exc
            if options.rate_bytes:
                tc.shape(self._ipr, slot.link, options.rate_bytes)  # what the sandbox receives
            with nsfd.inside(fd):
                with IPRoute() as ipr:
                    self._inside(ipr, slot, options)
        except BaseException:
            if made_link:
                self._delete_link(slot.link)
            if fd >= 0:
                os.close(fd)
            alloc.release(slot, lock_fd)
            raise
        return Lease(fd, slot, lock_fd, options)

    def _inside(self, ipr, slot: Slot, options: NetworkOptions) -> None:
        """Set up the sandbox's side; this thread is in its namespace."""
        step = "lo up"
        try:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            index = ipr.link_lookup(ifname=SANDBOX_DEVICE)[0]
            step = f"address {slot.sandbox_ip}/{SLOT_PREFIX} on {SANDBOX_DEVICE}"
            ipr.addr("add", index=index, address=slot.sandbox_ip, prefixlen=SLOT_PREFIX)
            ipr.link("set", index=index, state="up")
            step = f"default route via {slot.host_ip}"
            ipr.route("add", dst="0.0.0.0/0", gateway=slot.host_ip, oif=index)
        except OSError as exc:
            raise NetworkError(exc.errno, f"{step} (sandbox namespace)", "veth") from exc
        # Firewall before the rate limit: nothing passes unfiltered, even for a moment
        # (no process is in the namespace yet anyway).
        nft.run(nft.sandbox_ruleset(options, slot.sandbox_ip, SANDBOX_DEVICE), f"sandbox firewall for {slot.link}")
        if options.rate_bytes:
            tc.shape(ipr, SANDBOX_DEVICE, options.rate_bytes)  # what the sandbox sends

    def _delete_link(self, name: str) -> None:
        try:
            self._ipr.link("del", ifname=name)
        except OSError:
            pass  # already gone with its namespace

    def _release(self, lease: Lease) -> None:
        """Delete the veth (both ends go), close the namespace, free the /30."""
        with self._lock:
            self._attached.discard(lease)
        self._delete_link(lease.slot.link)
        for fd in (lease.fd, lease.pidfd):
            if fd >= 0:
                os.close(fd)
        lease.fd = lease.pidfd = -1
        self._allocators[lease.options.address_range].release(lease.slot, lease.lock_fd)

    # -- the spawn side (any thread) --------------------------------------------------
    def lease(self, options: NetworkOptions) -> Lease:
        """A ready namespace for `options`, made now if none is waiting."""
        with self._lock:
            if self._closed:
                raise NetworkError(9, "the supervisor's network manager is closed", "netns-create")
            shells = self._ready.get(options)
            lease = shells.popleft() if shells else None
            if lease is not None:
                self._ready.move_to_end(options)
        if lease is None:
            lease = self._call(lambda: self._make(options)).result()
        self._replenish(options)
        return lease

    def attach(self, lease: Lease, pidfd: int) -> None:
        """The sandbox cloned into `lease` runs as `pidfd` (not ours: duplicated):
        release the lease when that process exits."""
        lease.pidfd = os.dup(pidfd)

        def watch():
            with self._lock:
                self._attached.add(lease)
            self._sel.register(lease.pidfd, selectors.EVENT_READ, lease)

        self._call(watch)

    def abandon(self, lease: Lease) -> None:
        """The spawn failed: release at once."""
        self._call(lambda: self._release(lease)).result()

    def _replenish(self, options: NetworkOptions) -> None:
        if self.pool_size <= 0:
            return
        with self._lock:
            if self._closed:
                return
            # Pre-make only for options used more than once (as pool.ShellPool
            # does): a one-off run, such as the CLI's, would pay for namespaces
            # nobody takes.
            if options not in self._seen:
                self._seen[options] = True
                if len(self._seen) > 4 * self._max_options:
                    self._seen.popitem(last=False)
                return
            self._seen.move_to_end(options)
            missing = self.pool_size - len(self._ready.get(options, ())) - self._pending[options]
            self._pending[options] += max(0, missing)
        for _ in range(missing):
            self._call(lambda: self._fill(options))

    def _fill(self, options: NetworkOptions) -> None:
        try:
            lease = self._make(options)
        except Exception:
            with self._lock:
                self._pending[options] -= 1
                self.failures += 1  # the next lease() makes one synchronously and raises
            return
        evicted = []
        with self._lock:
            self._pending[options] -= 1
            if self._closed:
                evicted.append(lease)
            else:
                self._ready.setdefault(options, collections.deque()).append(lease)
                self._ready.move_to_end(options)
                while len(self._ready) > self._max_options:
                    evicted.extend(self._ready.popitem(last=False)[1])
        for old in evicted:
            self._release(old)

    # -- lifecycle -----------------------------------------------------------------
    def settle(self) -> None:
        """Wait until every job queued so far (fills, releases) has run."""
        self._call(lambda: None).result()

    @property
    def host(self) -> HostNet | None:
        return self._host

    def close(self) -> None:
        """Release every lease (a running egress sandbox loses its network),
        remove the host table, stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True

        def teardown():
            with self._lock:
                leases = [l for q in self._ready.values() for l in q] + list(self._attached)
                self._ready.clear()
            for lease in leases:
                if lease.pidfd >= 0:
                    try:
                        self._sel.unregister(lease.pidfd)
                    except (KeyError, ValueError):
                        pass
                self._release(lease)
            if self._host is not None:
                host, self._host = self._host, None
                host.close()
            if self._ipr is not None:
                self._ipr.close()
            remove_dir_if_empty(self.lock_dir)

        try:
            self._call(teardown).result()
        finally:
            self._call(None).result()
            self._thread.join()
            self._sel.close()
            os.close(self._wake_r)
            os.close(self._wake_w)


class JoinTarget:
    """The namespace one spawn clones into (modes egress and netns): `fd` for
    the plan; `spawned(pidfd)` after a successful clone, `failed()` otherwise."""

    def __init__(self, fd: int, lease: Lease | None = None, manager: NetworkManager | None = None,
                 close_fd: bool = False):
        self.fd, self._lease, self._manager, self._close_fd = fd, lease, manager, close_fd

    def spawned(self, pidfd: int) -> None:
        if self._lease is not None:
            self._manager.attach(self._lease, pidfd)
        elif self._close_fd:
            os.close(self.fd)

    def failed(self) -> None:
        if self._lease is not None:
            self._manager.abandon(self._lease)
        elif self._close_fd:
            os.close(self.fd)


def join_target(plan_network, supervisor) -> JoinTarget | None:
    """Where a spawn of this plan clones into, or None (a namespace of its own)."""
    if not plan_network.join:
        return None
    if plan_network.mode == "egress":
        manager = supervisor.network
        lease = manager.lease(plan_network.options)
        return JoinTarget(lease.fd, lease, manager)
    from ..network import open_join_netns

    fd, ours = open_join_netns(plan_network.options)
    return JoinTarget(fd, close_fd=ours)
