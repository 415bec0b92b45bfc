"""The host-namespace side of egress, one per supervisor: its nftables table
(NAT for the sandbox ranges, no forwarding between or into sandbox links, no
sandbox traffic to the host itself), the janitor that removes the table if the
supervisor dies, and its share of ip_forward.

Order of set-up, one line of why each:
  1. janitor           started first: whatever happens next, EOF on its pipe cleans up
  2. ip_forward        routing between the veths and the host's interfaces needs it
  3. table             every sandbox link is covered before the first veth exists
Tear-down runs the other way; a killed supervisor's janitor does the same.
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys

from ..errors import NetworkError
from . import forwarding, nft
from .locks import LOCK_DIR

JANITOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "janitor.py")


class HostNet:
    def __init__(self, lock_dir: str = LOCK_DIR):
        self.lock_dir = lock_dir
        self.table = nft.host_table_name(os.getpid(), secrets.token_hex(4))
        self.ranges: set[str] = set()
        self._janitor: subprocess.Popen | None = None
        self._janitor_pipe = -1
        self._users = -1
        self._table_made = False
        try:
            self._start_janitor()
            self._users = forwarding.acquire(lock_dir)
            nft.run(nft.host_ruleset(self.table), f"create host table {self.table}")
            self._table_made = True
        except BaseException:
            self.close()
            raise

    def _start_janitor(self) -> None:
        read_end, self._janitor_pipe = os.pipe2(os.O_CLOEXEC)
        try:
            # Its own session: a terminal's signals for our group do not end it.
            self._janitor = subprocess.Popen(
                [sys.executable, "-I", "-S", JANITOR, self.table, self.lock_dir], stdin=read_end,
                stdout=subprocess.DEVNULL, close_fds=True, start_new_session=True)
        except OSError as exc:
            raise NetworkError(exc.errno, f"start the janitor {JANITOR}", "janitor") from exc
        finally:
            os.close(read_end)

    def add_range(self, address_range: str) -> None:
        """Masquerade a sandbox range behind the host (once per range)."""
        if address_range not in self.ranges:
            nft.run(nft.masquerade_rule(self.table, address_range), f"NAT for {address_range}")
            self.ranges.add(address_range)

    @property
    def janitor_pid(self) -> int | None:
        return self._janitor.pid if self._janitor else None

    def close(self) -> None:
        """Delete the table, give up ip_forward, end the janitor (in that order:
        the janitor only repeats what is left)."""
        errors = []
        if self._table_made:
            self._table_made = False
            try:
                nft.run(nft.delete_table_text(self.table), f"delete host table {self.table}")
            except NetworkError as exc:
                errors.append(exc)
        if self._users >= 0:
            users, self._users = self._users, -1
            forwarding.release(users, self.lock_dir)
        if self._janitor_pipe >= 0:
            os.close(self._janitor_pipe)
            self._janitor_pipe = -1
        if self._janitor is not None:
            try:
                self._janitor.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._janitor.kill()
                self._janitor.wait()
            self._janitor = None
        if errors:
            raise errors[0]
