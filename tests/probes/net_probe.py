"""net_probe COMMAND ARGS...: the network as seen from inside, one JSON object out.

  links                  interfaces via route netlink (pyroute2) and /proc/net/dev
  connect HOST PORT      TCP connect                                  -> {"errno": ..}
  abstract NAME          connect to the abstract unix socket @NAME    -> {"errno": .., "listed": bool}
  sockets                socket() for every family/type worth denying -> {case: errno name}
"""
import socket
import sys

import probelib as P
import syscall_table as T

SOCKET_CASES = {
    "af_alg": (socket.AF_ALG, socket.SOCK_SEQPACKET, 0),
    "af_packet_raw": (socket.AF_PACKET, socket.SOCK_RAW, 0),
    "af_packet_dgram": (socket.AF_PACKET, socket.SOCK_DGRAM, 0),
    "af_vsock_stream": (socket.AF_VSOCK, socket.SOCK_STREAM, 0),
    "af_vsock_dgram": (socket.AF_VSOCK, socket.SOCK_DGRAM, 0),
    "inet_raw": (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
    "inet6_raw": (socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6),
    "inet_raw_cloexec": (socket.AF_INET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.IPPROTO_RAW),
    "netlink_sock_diag": (socket.AF_NETLINK, socket.SOCK_RAW, T.NETLINK_SOCK_DIAG),
    "netlink_audit": (socket.AF_NETLINK, socket.SOCK_RAW, T.NETLINK_AUDIT),
    "netlink_netfilter": (socket.AF_NETLINK, socket.SOCK_RAW, T.NETLINK_NETFILTER),
    "netlink_kobject_uevent": (socket.AF_NETLINK, socket.SOCK_RAW, T.NETLINK_KOBJECT_UEVENT),
    "netlink_generic": (socket.AF_NETLINK, socket.SOCK_RAW, T.NETLINK_GENERIC),
    "netlink_xfrm": (socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_XFRM),
    # Allowed: positive controls.
    "netlink_route": (socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE),
    "unix_stream": (socket.AF_UNIX, socket.SOCK_STREAM, 0),
    "inet_stream": (socket.AF_INET, socket.SOCK_STREAM, 0),
    "inet6_dgram": (socket.AF_INET6, socket.SOCK_DGRAM, 0),
}


def links():
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = [{"name": link.get_attr("IFLA_IFNAME"), "up": bool(link["flags"] & 1)} for link in ipr.get_links()]
    with open("/proc/net/dev") as f:
        proc = sorted(line.split(":", 1)[0].strip() for line in f.readlines()[2:])
    return {"netlink": found, "proc_net_dev": proc}


def connect(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect((host, int(port)))
        return {"errno": "OK"}
    except socket.timeout:
        return {"errno": "timeout"}
    except OSError as exc:
        return {"errno": P.errname(exc.errno)}
    finally:
        s.close()


def abstract(name):
    with open("/proc/net/unix") as f:
        listed = any(line.rstrip().endswith("@" + name) for line in f)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect("\0" + name)
        return {"errno": "OK", "listed": listed}
    except OSError as exc:
        return {"errno": P.errname(exc.errno), "listed": listed}
    finally:
        s.close()


def sockets():
    return {case: P.try_call(socket.socket, *args) for case, args in SOCKET_CASES.items()}


def main(cmd, args):
    P.emit({"links": links, "connect": connect, "abstract": abstract, "sockets": sockets}[cmd](*args))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
