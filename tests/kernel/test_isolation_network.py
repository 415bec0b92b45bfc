"""Network isolation from inside: a private network namespace whose only
interface is lo; the host's loopback services are out of reach."""
import socket

import pytest

import sandbox
from probes.harness import expect_probe

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("no_leaks")]


def test_only_loopback_and_it_is_up(probe_config):
    out = expect_probe(probe_config(), "net_probe.py", "links")
    assert out["netlink"] == [{"name": "lo", "up": True}], out
    assert out["proc_net_dev"] == ["lo"], out


def test_net_none_leaves_loopback_down(probe_config):
    out = expect_probe(probe_config(net="none"), "net_probe.py", "links")
    assert out["netlink"] == [{"name": "lo", "up": False}], out


def test_loopback_inside_works(probe_config):
    code = ("import socket\n"
            "s=socket.create_server(('127.0.0.1',0)); c=socket.create_connection(s.getsockname())\n"
            "a,_=s.accept(); c.sendall(b'ping'); print(a.recv(4).decode())\n")
    result = sandbox.run(["python3", "-c", code], probe_config())
    assert result.stdout == b"ping\n", result.stderr


@pytest.fixture
def host_listener():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.setblocking(False)
    yield srv
    srv.close()


@pytest.mark.parametrize("net", ["loopback", "none"])
def test_host_loopback_port_is_unreachable(probe_config, host_listener, net):
    port = host_listener.getsockname()[1]
    out = expect_probe(probe_config(net=net), "net_probe.py", "connect", "127.0.0.1", str(port))
    assert out["errno"] in ("ECONNREFUSED", "ENETUNREACH"), out
    with pytest.raises(BlockingIOError):
        host_listener.accept()  # nothing from the sandbox arrived
