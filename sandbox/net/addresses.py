"""Sandbox addresses with no collisions, across concurrent supervisors too.

Each egress sandbox gets one /30 of the configured range: .1 for the host end
of its veth, .2 for the sandbox end.  A /30 is taken by holding an exclusive
flock on /run/sandbox-net/<network address>.lock: a lock dies with its holder,
so a killed supervisor frees its addresses without cleanup code.  Lock files
are named by address, not by range index, so supervisors configured with
different (even overlapping) ranges still never share a /30.  Link names come
from the address too (sbx + 8 hex digits, within IFNAMSIZ).

A lock file is unlinked by its holder when released (locks.py); a killed
supervisor's files are swept by its janitor.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import random
from dataclasses import dataclass

from ..errors import NetworkError
from .locks import LOCK_DIR, lock_file, unlock_and_remove
from .options import SLOT_PREFIX

LINK_PREFIX = "sbx"  # host ends of sandbox veths; the host firewall matches "sbx*"


@dataclass(frozen=True)
class Slot:
    network: ipaddress.IPv4Network  # the /30

    @property
    def host_ip(self) -> str:
        return str(self.network.network_address + 1)

    @property
    def sandbox_ip(self) -> str:
        return str(self.network.network_address + 2)

    @property
    def link(self) -> str:
        """Host end of the veth: sbx + the /30's address in hex (11 chars)."""
        return f"{LINK_PREFIX}{int(self.network.network_address):08x}"


class SlotAllocator:
    """Hands out /30s of `address_range`, scanning from a random start so that
    concurrent supervisors rarely contend for the same files."""

    def __init__(self, address_range: str, lock_dir: str = LOCK_DIR):
        self.space = ipaddress.IPv4Network(address_range)
        self.lock_dir = lock_dir
        self.count = self.space.num_addresses >> (32 - SLOT_PREFIX)
        self._cursor = random.randrange(self.count)

    def _slot(self, index: int) -> Slot:
        base = int(self.space.network_address) + (index << (32 - SLOT_PREFIX))
        return Slot(ipaddress.IPv4Network((base, SLOT_PREFIX)))

    def lock_path(self, slot: Slot) -> str:
        return os.path.join(self.lock_dir, f"{slot.network.network_address}.lock")

    def acquire(self, in_use=lambda slot: False) -> tuple[Slot, int]:
        """Lock a free /30: (slot, lock fd).  `in_use(slot)` lets the caller
        skip slots whose link still exists (a namespace of a dead supervisor the
        kernel has not finished destroying)."""
        for _ in range(self.count):
            index, self._cursor = self._cursor, (self._cursor + 1) % self.count
            slot = self._slot(index)
            path = self.lock_path(slot)
            fd = lock_file(path, blocking=False)
            if fd is None:
                continue
            if in_use(slot):
                os.close(fd)  # leave the file: its owner's namespace still exists
                continue
            return slot, fd
        raise NetworkError(errno.EADDRNOTAVAIL, f"every /{SLOT_PREFIX} of {self.space} is in use "
                           f"({self.count} sandboxes); widen NetworkOptions.address_range", "address")

    def release(self, slot: Slot, fd: int) -> None:
        unlock_and_remove(self.lock_path(slot), fd)
