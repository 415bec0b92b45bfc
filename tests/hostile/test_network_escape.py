"""Egress sandboxes against their own network: a sandbox cannot change its
addresses, routes, links, qdiscs or firewall (the namespace belongs to the
host's user namespace; it has no CAP_NET_ADMIN there), and a supervisor killed
with SIGKILL leaves no link, nftables table, address lock or ip_forward change."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import sandbox
from probes import netlab
from probes.harness import PROBES, last_json

pytestmark = [pytest.mark.hostile, pytest.mark.kernel]


@pytest.fixture(scope="module")
def lab():
    with netlab.lab(pool_size=0) as made:
        yield made


def test_supervisor_sigkill_leaves_nothing():
    """First in this module: no other egress user in this process yet, so the
    janitor must also restore ip_forward."""
    forward_before, before = netlab.ip_forward(), netlab.leftovers()
    proc = subprocess.Popen([sys.executable, "-B", os.path.join(PROBES, "egress_supervisor.py")],
                            stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        assert len(info["links"]) >= 4 and info["table"] in netlab.leftovers()["tables"]  # 2 running, 2 pre-made
        assert netlab.ip_forward() == "1"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if netlab.leftovers() == before and netlab.ip_forward() == forward_before and not _alive(info["janitor"]) \
                and not any(_alive(p) for p in info["pids"]):
            break
        time.sleep(0.1)
    assert netlab.leftovers() == before  # links, the table, the address lock files
    assert netlab.ip_forward() == forward_before
    assert not _alive(info["janitor"]) and not any(_alive(p) for p in info["pids"])


def test_sandbox_cannot_change_its_network(lab, probe_config):
    _, sup = lab
    config = probe_config(net="egress", network={"allow": [f"{netlab.REMOTE_IP}:7000/tcp"], "rate_bytes": "4m"})
    code = ("import sys, json; sys.path.insert(0, '/probes'); import egress_probe as E, probelib as P\n"
            f"out = E.tamper(); out['after_7000'] = E.tcp('{netlab.REMOTE_IP}', 7000)['errno']\n"
            f"out['after_7001'] = E.tcp('{netlab.REMOTE_IP}', 7001)['errno']; P.emit(out)\n")
    result = sandbox.run(["python3", "-B", "-c", code], config, supervisor=sup)
    out = last_json(result.stdout)
    assert out is not None, result.stderr[-3000:]
    for case in ("addr_add", "route_del_default", "route_add", "link_down", "link_add_dummy", "qdisc_add"):
        assert out[case] in ("EPERM", "EACCES"), (case, out)
    for case in ("ip_cmd_addr_flush", "nft_flush", "tc_cmd_qdisc_del"):
        assert out[case] != "OK", (case, out)
    denied = ("EPERM", "EACCES", "EAFNOSUPPORT")  # no CAP_NET_RAW in the namespace, or seccomp first
    assert out["raw_socket"] in denied and out["packet_socket"] in denied, out
    assert out["sysctl_write"] in ("EACCES", "EPERM", "EROFS"), out
    # Still the same network, still the same firewall.
    assert out["after_7000"] == "OK" and out["after_7001"] == "ECONNREFUSED", out


def test_spoofed_source_does_not_leave(lab, probe_config):
    """IP_FREEBIND needs no capability: bind to another sandbox's address and
    send: it never leaves (the kernel's route lookup refuses a foreign source;
    the sandbox's firewall would drop it anyway: only its own source leaves)."""
    remote, sup = lab
    code = ("import socket, errno\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.setsockopt(socket.IPPROTO_IP, 15, 1)\n"  # IP_FREEBIND
            "s.bind(('10.200.0.6', 0))\n"
            "try:\n"
            f"    s.sendto(b'x', ('{netlab.REMOTE_IP}', 7002)); print('SENT')\n"
            "except OSError as e: print(errno.errorcode[e.errno])\n")
    result = sandbox.run(["python3", "-c", code], probe_config(net="egress"), supervisor=sup)
    # The route lookup refuses a foreign source (ENETUNREACH) or the firewall drops it (EPERM).
    assert result.stdout.strip() in (b"EPERM", b"ENETUNREACH", b"EINVAL"), result


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
