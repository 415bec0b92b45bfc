"""Host-side network lab for the network tests (never run inside a sandbox).

A "remote" network namespace the test makes, joined to the host namespace by
a veth (host end tnrXXXX, 198.18.0.1/30; remote end eth0, 198.18.0.2/30:
RFC 2544 benchmarking space), running small services on sockets created
inside it by stepping a thread in and out (sandbox.net.nsfd.inside).  All
test traffic goes to it or to loopback.  Nothing is named in /run/netns: the
namespace dies with its descriptor.

Services (TCP unless said):
  7000, 7001   echo a line back, prefixed with the peer's address
  7002/udp     echo a datagram back
  53/udp       echo (a stand-in resolver)
  7003         sink: count bytes to EOF, answer the count
  7004         source: send N bytes (N read as a line), then close
"""
from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading

from pyroute2 import IPRoute

from sandbox.net import nsfd
from sandbox.supervisor import Supervisor

HOST_IP, REMOTE_IP, PREFIX = "198.18.0.1", "198.18.0.2", 30


class RemoteLab:
    def __init__(self):
        self.link = f"tnr{secrets.token_hex(3)}"
        self.fd = nsfd.new_netns()
        self._sockets: list[socket.socket] = []
        self._stop = False
        self.accepted: list[tuple[int, str]] = []  # (port, peer address) of every TCP connection
        with IPRoute() as ipr:
            ipr.link("add", ifname=self.link, kind="veth", peer={"ifname": "eth0", "net_ns_fd": self.fd})
            index = ipr.link_lookup(ifname=self.link)[0]
            ipr.addr("add", index=index, address=HOST_IP, prefixlen=PREFIX)
            ipr.link("set", index=index, state="up")
        with nsfd.inside(self.fd):
            with IPRoute() as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
                eth = ipr.link_lookup(ifname="eth0")[0]
                ipr.addr("add", index=eth, address=REMOTE_IP, prefixlen=PREFIX)
                ipr.link("set", index=eth, state="up")
                ipr.route("add", dst="0.0.0.0/0", gateway=HOST_IP)
            tcp = {port: socket.create_server(("0.0.0.0", port), backlog=64) for port in (7000, 7001, 7003, 7004)}
            udp = {}
            for port in (7002, 53):
                udp[port] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                udp[port].bind(("0.0.0.0", port))
        self._sockets += list(tcp.values()) + list(udp.values())
        for port in (7000, 7001):
            self._serve(tcp[port], self._echo)
        self._serve(tcp[7003], self._sink)
        self._serve(tcp[7004], self._source)
        for sock in udp.values():
            threading.Thread(target=self._udp_echo, args=(sock,), daemon=True).start()

    def _serve(self, server, handler):
        port = server.getsockname()[1]

        def loop():
            while not self._stop:
                try:
                    conn, peer = server.accept()
                except OSError:
                    return
                self.accepted.append((port, peer[0]))
                threading.Thread(target=handler, args=(conn, peer), daemon=True).start()

        threading.Thread(target=loop, daemon=True).start()

    @staticmethod
    def _echo(conn, peer):
        with conn:
            conn.settimeout(10)
            try:
                data = conn.recv(4096)
                conn.sendall(f"{peer[0]} ".encode() + data)
            except OSError:
                pass

    @staticmethod
    def _sink(conn, peer):
        with conn:
            conn.settimeout(60)
            total = 0
            try:
                while chunk := conn.recv(1 << 16):
                    total += len(chunk)
                conn.sendall(f"{total}\n".encode())
            except OSError:
                pass

    @staticmethod
    def _source(conn, peer):
        with conn:
            conn.settimeout(60)
            try:
                want = int(conn.makefile().readline())
                block = b"x" * (1 << 16)
                while want > 0:
                    conn.sendall(block[:want])
                    want -= len(block)
            except (OSError, ValueError):
                pass

    @staticmethod
    def _udp_echo(sock):
        while True:
            try:
                data, peer = sock.recvfrom(4096)
                if peer is None:  # shut down by close()
                    return
                sock.sendto(data, peer)
            except OSError:
                return

    def connect_from_remote(self, ip: str, port: int, timeout: float = 1.0) -> str:
        """TCP connect from inside the remote namespace: 'OK' or the errno name."""
        with nsfd.inside(self.fd):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        return _connect(s, ip, port, timeout)

    def close(self):
        self._stop = True
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        with IPRoute() as ipr:
            try:
                ipr.link("del", ifname=self.link)
            except OSError:
                pass
        os.close(self.fd)


def errno_name(err: int) -> str:
    import errno

    return errno.errorcode.get(err, str(err))


def connect_from_host(ip: str, port: int, timeout: float = 1.0) -> str:
    return _connect(socket.socket(socket.AF_INET, socket.SOCK_STREAM), ip, port, timeout)


def _connect(s: socket.socket, ip: str, port: int, timeout: float) -> str:
    """TCP connect with socket `s` (closed after): 'OK', 'timeout' or the errno name."""
    with s:
        s.settimeout(timeout)
        try:
            s.connect((ip, port))
            return "OK"
        except socket.timeout:
            return "timeout"
        except OSError as exc:
            return errno_name(exc.errno)


def leftovers(table_prefix: str = "sandbox_") -> dict:
    """What egress leaves on the host: sbx* links, sandbox_* nft tables, files
    under /run/sandbox-net."""
    import subprocess

    with IPRoute() as ipr:
        links = sorted(l.get_attr("IFLA_IFNAME") for l in ipr.get_links()
                       if l.get_attr("IFLA_IFNAME").startswith("sbx"))
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    tables = sorted(line.split()[-1] for line in out.splitlines() if line.split()[-1].startswith(table_prefix))
    try:
        files = sorted(os.listdir("/run/sandbox-net"))
    except FileNotFoundError:
        files = []
    return {"links": links, "tables": tables, "lock_files": files}


@contextlib.contextmanager
def lab(pool_size: int):
    """(RemoteLab, Supervisor) for a test module; afterwards checks that no
    link, nftables table or address lock is left and ip_forward is as before."""
    forward_before, before = ip_forward(), leftovers()
    remote = RemoteLab()
    sup = Supervisor(pool_size=pool_size)
    try:
        yield remote, sup
    finally:
        sup.close()
        remote.close()
    assert leftovers() == before
    assert ip_forward() == forward_before


def ip_forward() -> str:
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        return f.read().strip()
