"""egress_probe COMMAND ARGS...: network operations from inside, one JSON object out.

  tcp HOST PORT            connect, send "ping", read the reply  -> {"errno", "reply"}
  udp HOST PORT            send a datagram, wait 1 s for the echo -> {"errno", "reply"}
  listen PORT SECONDS      print {"ip": own eth0 address} at once, then accept for SECONDS
                           -> {"accepted": [peer, ...]}
  send HOST PORT BYTES     upload BYTES to a sink that answers the count -> {"bytes", "seconds"}
  recv HOST PORT BYTES     download BYTES from a source                  -> {"bytes", "seconds"}
  udpflood HOST PORT SECS  send small datagrams as fast as possible      -> {"sent", "errors", "seconds"}
  tamper                   try to change this namespace's links, addresses, routes,
                           firewall and qdiscs, and to open raw sockets -> {case: errno}
  resolv                   /etc/resolv.conf                               -> {"text"}
"""
import os
import socket
import subprocess
import sys
import time

import probelib as P


def own_ip():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("198.18.0.2", 9))  # no packet: just a route lookup
        return s.getsockname()[0]
    finally:
        s.close()


def tcp(host, port):
    try:
        with socket.create_connection((host, int(port)), timeout=3) as s:
            s.sendall(b"ping")
            return {"errno": "OK", "reply": s.recv(100).decode()}
    except socket.timeout:
        return {"errno": "timeout", "reply": None}
    except OSError as exc:
        return {"errno": P.errname(exc.errno), "reply": None}


def udp(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    try:
        s.sendto(b"ping", (host, int(port)))
        data, _ = s.recvfrom(100)
        return {"errno": "OK", "reply": data.decode()}
    except socket.timeout:
        return {"errno": "timeout", "reply": None}
    except OSError as exc:
        return {"errno": P.errname(exc.errno), "reply": None}
    finally:
        s.close()


def listen(port, seconds):
    srv = socket.create_server(("0.0.0.0", int(port)))
    P.emit({"ip": own_ip()})
    srv.settimeout(float(seconds))
    accepted = []
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        try:
            conn, peer = srv.accept()
            accepted.append(peer[0])
            conn.close()
        except socket.timeout:
            break
    return {"accepted": accepted}


def send(host, port, nbytes):
    nbytes = int(nbytes)
    with socket.create_connection((host, int(port)), timeout=60) as s:
        block = b"y" * (1 << 16)
        start = time.monotonic()
        left = nbytes
        while left > 0:
            s.sendall(block[:left])
            left -= len(block)
        s.shutdown(socket.SHUT_WR)
        got = int(s.makefile().readline())  # the sink has it all
        return {"bytes": got, "seconds": time.monotonic() - start}


def recv(host, port, nbytes):
    with socket.create_connection((host, int(port)), timeout=60) as s:
        s.sendall(f"{nbytes}\n".encode())
        total, start = 0, None
        while chunk := s.recv(1 << 16):
            if start is None:
                start = time.monotonic()  # from the first byte: the request's round trip aside
            total += len(chunk)
        return {"bytes": total, "seconds": time.monotonic() - (start or time.monotonic())}


def udpflood(host, port, seconds):
    """Send small datagrams as fast as possible for SECONDS; a packet-rate
    limit in the output path makes the excess fail with EPERM."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = errors = 0
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        try:
            s.sendto(b"z" * 32, (host, int(port)))
            sent += 1
        except OSError:
            errors += 1
    return {"sent": sent, "errors": errors, "seconds": float(seconds)}


def _netlink(action):
    from pyroute2 import IPRoute

    try:
        with IPRoute() as ipr:
            action(ipr)
        return "OK"
    except OSError as exc:
        return P.errname(exc.errno)
    except Exception as exc:  # pyroute2 wraps some errors
        code = getattr(exc, "code", None)
        return P.errname(code) if isinstance(code, int) else type(exc).__name__


def _run(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return "OK" if r.returncode == 0 else f"exit {r.returncode}: {r.stderr.strip()[:80]}"
    except FileNotFoundError:
        return "missing"


def tamper():
    eth = lambda ipr: ipr.link_lookup(ifname="eth0")[0]  # noqa: E731
    out = {
        "addr_add": _netlink(lambda ipr: ipr.addr("add", index=eth(ipr), address="198.18.0.2", prefixlen=32)),
        "route_del_default": _netlink(lambda ipr: ipr.route("del", dst="0.0.0.0/0")),
        "route_add": _netlink(lambda ipr: ipr.route("add", dst="10.201.0.0/16", oif=eth(ipr))),
        "link_down": _netlink(lambda ipr: ipr.link("set", index=eth(ipr), state="down")),
        "link_add_dummy": _netlink(lambda ipr: ipr.link("add", ifname="d0", kind="dummy")),
        "qdisc_add": _netlink(lambda ipr: ipr.tc("add", "ingress", eth(ipr), 0xFFFF0000)),
        "tc_cmd_qdisc_del": _run(["tc", "qdisc", "del", "dev", "eth0", "root"]),
        "ip_cmd_addr_flush": _run(["ip", "addr", "flush", "dev", "eth0"]),
        "nft_flush": _run(["nft", "flush", "ruleset"]),
        "raw_socket": P.try_call(socket.socket, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW),
        "packet_socket": P.try_call(socket.socket, socket.AF_PACKET, socket.SOCK_RAW, 0),
        "netfilter_socket": P.try_call(socket.socket, socket.AF_NETLINK, socket.SOCK_RAW, 12),
    }
    try:
        with open("/proc/sys/net/ipv4/conf/eth0/forwarding", "w") as f:
            f.write("1")
        out["sysctl_write"] = "OK"
    except OSError as exc:
        out["sysctl_write"] = P.errname(exc.errno)
    return out


def resolv():
    with open("/etc/resolv.conf") as f:
        return {"text": f.read()}


COMMANDS = {"tcp": tcp, "udp": udp, "listen": listen, "send": send, "recv": recv, "udpflood": udpflood,
            "tamper": tamper, "resolv": resolv}

if __name__ == "__main__":
    P.emit(COMMANDS[sys.argv[1]](*sys.argv[2:]))
    sys.stdout.flush()
    os._exit(0)
