"""#29 dangerous socket families and #30 abstract unix sockets of the host."""
import os
import socket

import pytest

from probes.harness import expect_probe

pytestmark = [pytest.mark.hostile, pytest.mark.usefixtures("no_leaks")]

ALLOWED = {"netlink_route", "unix_stream", "inet_stream", "inet6_dgram"}
# What a denied family may answer: the policy says EAFNOSUPPORT (no such family
# here), EPROTONOSUPPORT (netlink protocols other than route) or EPERM (raw).
REFUSED = {"EPERM", "EACCES", "EAFNOSUPPORT", "EPROTONOSUPPORT", "ENOSYS"}


@pytest.fixture
def sockets(probe_config):
    return expect_probe(probe_config(), "net_probe.py", "sockets")


@pytest.mark.parametrize("case", ["af_alg", "af_packet_raw", "af_packet_dgram", "af_vsock_stream",
                                  "af_vsock_dgram", "inet_raw", "inet6_raw", "inet_raw_cloexec",
                                  "netlink_sock_diag", "netlink_audit", "netlink_netfilter",
                                  "netlink_kobject_uevent", "netlink_generic", "netlink_xfrm"])
def test_dangerous_family_is_refused(sockets, case):
    assert sockets[case] in REFUSED, f"socket() for {case}: {sockets[case]}"


@pytest.mark.parametrize("case", sorted(ALLOWED))
def test_needed_family_works(sockets, case):
    assert sockets[case] == "OK", f"socket() for {case}: {sockets[case]}"


def test_route_netlink_answers(probe_config):
    out = expect_probe(probe_config(), "net_probe.py", "links")
    assert [link["name"] for link in out["netlink"]] == ["lo"]


@pytest.fixture
def host_abstract_socket():
    name = f"sbx-test-{os.getpid()}-{os.urandom(4).hex()}"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind("\0" + name)
    srv.listen(4)
    srv.setblocking(False)
    yield name, srv
    srv.close()


def test_host_abstract_socket_is_unreachable(probe_config, host_abstract_socket):
    name, srv = host_abstract_socket
    out = expect_probe(probe_config(), "net_probe.py", "abstract", name)
    assert out["listed"] is False, "the host's abstract socket is listed in /proc/net/unix inside"
    assert out["errno"] == "ECONNREFUSED", out
    with pytest.raises(BlockingIOError):
        srv.accept()
