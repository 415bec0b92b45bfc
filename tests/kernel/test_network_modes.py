"""Network modes egress and netns, checked from inside real sandboxes against
services in a "remote" network namespace this module makes (tests/probes/netlab.py).
Traffic goes only to that namespace, to sandboxes of this module, or to loopback."""
import json
import os
import socket
import time

import pytest

import sandbox
from probes import netlab
from probes.harness import last_json, probe_argv
from sandbox.errors import ConfigError, NetworkError
from sandbox.supervisor import Supervisor

pytestmark = [pytest.mark.kernel]
REMOTE = netlab.REMOTE_IP


@pytest.fixture(scope="module")
def lab():
    with netlab.lab(pool_size=1) as made:
        yield made


@pytest.fixture
def run_in(lab, probe_config):
    _, sup = lab

    def run(args, **config):
        return expect_probe_sup(probe_config(**config), sup, *args)

    return run


def expect_probe_sup(config, sup, *args):
    result = sandbox.run(probe_argv("egress_probe.py", *args), config, supervisor=sup)
    out = last_json(result.stdout)
    assert result.exit_code == 0 and out is not None, (result, result.stderr[-3000:])
    return out


def test_egress_reaches_the_test_service_masqueraded(run_in):
    out = run_in(["tcp", REMOTE, "7000"], net="egress")
    assert out == {"errno": "OK", "reply": f"{netlab.HOST_IP} ping"}  # NAT: the remote sees the host


def test_egress_sees_lo_and_eth0_only(lab, probe_config):
    _, sup = lab
    code = "import socket,json;print(json.dumps(sorted(n for _,n in socket.if_nameindex())))"
    result = sandbox.run(["python3", "-c", code], probe_config(net="egress"), supervisor=sup)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == ["eth0", "lo"]


def _listening_sandbox(sup, config, seconds="3"):
    box = sandbox.spawn(probe_argv("egress_probe.py", "listen", "8000", seconds), config,
                        stdout=sandbox.PIPE, stderr=sandbox.PIPE, supervisor=sup)
    ip = json.loads(box.stdout.readline())["ip"]
    return box, ip


def _accepted(box):
    rest = box.stdout.read()
    result = box.wait()
    assert result.exit_code == 0, box
    return last_json(rest)["accepted"]


def test_no_inbound_from_host_or_remote(lab, probe_config):
    remote, sup = lab
    box, ip = _listening_sandbox(sup, probe_config(net="egress"))
    with box:
        assert ip.startswith("10.200.")
        assert netlab.connect_from_host(ip, 8000) in ("EPERM", "timeout")  # not ECONNREFUSED: nothing got there
        assert remote.connect_from_remote(ip, 8000) in ("timeout", "EHOSTUNREACH")
        assert _accepted(box) == []


def test_sandboxes_cannot_reach_each_other(lab, probe_config, run_in):
    _, sup = lab
    box, ip = _listening_sandbox(sup, probe_config(net="egress"), seconds="4")
    with box:
        out = run_in(["tcp", ip, "8000"], net="egress")
        # Not ECONNREFUSED: a reset would mean the SYN got there.
        assert out["errno"] in ("EHOSTUNREACH", "timeout"), out
        gateway = ip.rsplit(".", 1)[0] + "." + str(int(ip.rsplit(".", 1)[1]) - 1)
        out = run_in(["tcp", gateway, "22"], net="egress")  # the host end of its own veth
        assert out["errno"] != "OK", out
        assert _accepted(box) == []


def test_allowlist_is_enforced(run_in):
    allow = {"allow": [f"{REMOTE}:7000/tcp"]}
    assert run_in(["tcp", REMOTE, "7000"], net="egress", network=allow)["errno"] == "OK"
    assert run_in(["tcp", REMOTE, "7001"], net="egress", network=allow)["errno"] == "ECONNREFUSED"
    assert run_in(["udp", REMOTE, "7002"], net="egress", network=allow)["reply"] is None
    # The same services without an allowlist: the refusals above were the allowlist.
    assert run_in(["tcp", REMOTE, "7001"], net="egress")["errno"] == "OK"
    assert run_in(["udp", REMOTE, "7002"], net="egress")["reply"] == "ping"


def test_port_ranges_and_udp_rules(run_in):
    allow = {"allow": [f"{REMOTE}:7001-7002/udp"]}
    assert run_in(["udp", REMOTE, "7002"], net="egress", network=allow)["reply"] == "ping"
    assert run_in(["tcp", REMOTE, "7001"], net="egress", network=allow)["errno"] == "ECONNREFUSED"


def test_dns_resolver_is_written_and_allowed(run_in):
    net = {"allow": [f"{REMOTE}:7000/tcp"], "dns": REMOTE}
    assert run_in(["resolv"], net="egress", network=net)["text"].startswith(f"nameserver {REMOTE}\n")
    assert run_in(["udp", REMOTE, "53"], net="egress", network=net)["reply"] == "ping"
    assert run_in(["udp", REMOTE, "53"], net="egress", network={"allow": [f"{REMOTE}:7000/tcp"]})["reply"] is None


@pytest.mark.parametrize("direction", ["send", "recv"])
def test_rate_limit_is_met_within_20_percent(run_in, direction):
    rate, size = 2_000_000, 6_000_000
    out = run_in([direction, REMOTE, "7003" if direction == "send" else "7004", str(size)],
                 net="egress", network={"rate_bytes": rate})
    assert out["bytes"] == size
    measured = out["bytes"] / out["seconds"]
    assert 0.8 * rate <= measured <= 1.2 * rate, (direction, measured)


def test_packet_rate_limit_is_met_within_20_percent(run_in):
    rate = 500
    out = run_in(["udpflood", REMOTE, "7002", "2"], net="egress", network={"rate_packets": rate})
    measured = out["sent"] / out["seconds"]
    assert out["errors"] > out["sent"]  # the flood was far above the rate: the limit cut it
    assert 0.8 * rate <= measured <= 1.2 * rate, measured


def test_join_netns_by_path_and_fd(lab, probe_config):
    remote, sup = lab
    code = "import socket,json;print(json.dumps(sorted(n for _,n in socket.if_nameindex())))"
    path = f"/proc/{os.getpid()}/fd/{remote.fd}"
    for net in ({"netns_path": path}, {"netns_fd": remote.fd}):
        result = sandbox.run(["python3", "-c", code], probe_config(net="netns", network=net), supervisor=sup)
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout) == ["eth0", "lo"]
    # In the remote namespace, its own services are on loopback-like reach.
    out = expect_probe_sup(probe_config(net="netns", network={"netns_fd": remote.fd}), sup, "tcp", REMOTE, "7000")
    assert out == {"errno": "OK", "reply": f"{REMOTE} ping"}


def test_join_netns_fails_closed_on_a_non_namespace(lab, probe_config, tmp_path):
    _, sup = lab
    with open(tmp_path / "f", "w") as f:
        with pytest.raises(NetworkError) as info:
            sandbox.run(["true"], probe_config(net="netns", network={"netns_fd": f.fileno()}), supervisor=sup)
        assert info.value.stage_name == "netns-join"
    with pytest.raises(NetworkError, match="netns-join"):
        sandbox.run(["true"], probe_config(net="netns", network={"netns_path": str(tmp_path / "nope")}),
                    supervisor=sup)
    with pytest.raises(ConfigError) as info:
        sandbox.Config.create(net="netns")
    assert info.value.field == "network.netns_path"


def test_leases_are_released_when_sandboxes_end(lab, run_in):
    _, sup = lab
    run_in(["tcp", REMOTE, "7000"], net="egress")
    sup.drain_pool()
    sup.network.settle()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        ready = sum(len(q) for q in sup.network._ready.values())
        if len(netlab.leftovers()["links"]) == ready:
            break
        time.sleep(0.05)
    assert len(netlab.leftovers()["links"]) == ready  # only the pre-made ones remain


def test_host_loopback_stays_unreachable(lab, run_in):
    srv = socket.create_server(("127.0.0.1", 0))
    with srv:
        out = run_in(["tcp", "127.0.0.1", str(srv.getsockname()[1])], net="egress")
        assert out["errno"] == "ECONNREFUSED"  # the sandbox's own loopback


def test_a_failed_join_in_the_core_is_stage_netns_join(tmp_path):
    """The C core itself refuses a descriptor that is not a namespace (the
    Python check is bypassed here): no child, stage 37, the thread unchanged."""
    from sandbox._core import ffi, lib
    from sandbox.plan import encoded_plan

    encoded = encoded_plan(sandbox.Config.create(net="netns", network={"netns_fd": 0}, disable=["cgroups"]))
    before = os.readlink("/proc/thread-self/ns/net")
    with open(tmp_path / "f", "w") as f:
        cplan, keep = encoded.for_prepare((), -1, f.fileno())
        out = ffi.new("struct sbx_spawn *")
        rc = lib.sbx_spawn(cplan, out)
    assert rc == -22 and out.stage == lib.SBX_STAGE_NETNS_JOIN  # EINVAL from setns
    assert os.readlink("/proc/thread-self/ns/net") == before


def test_concurrent_supervisors_never_share_addresses_or_reach_each_other(lab, probe_config, run_in):
    """Two more supervisors beside the module's, one on another range: every
    sandbox gets its own /30, and none reaches another, whatever its range."""
    _, sup = lab
    other, third = Supervisor(pool_size=1), Supervisor(pool_size=0)
    try:
        boxes = [_listening_sandbox(s, probe_config(net="egress", network=net), seconds="12")
                 for s, net in ((sup, {}), (other, {}), (third, {"address_range": "10.201.0.0/24"}))
                 for _ in range(2)]
        ips = [ip for _, ip in boxes]
        assert len(set(ips)) == len(ips) and sum(ip.startswith("10.201.0.") for ip in ips) == 2
        for ip in ips[::2]:  # one per supervisor, from a sandbox of the module's supervisor
            out = run_in(["tcp", ip, "8000"], net="egress")
            # Same range: its own firewall refuses the range.  Another range: the host drops
            # forwarding between sandbox links.
            assert out["errno"] == ("timeout" if ip.startswith("10.201.") else "EHOSTUNREACH"), (ip, out)
        out = expect_probe_sup(probe_config(net="egress", network={"address_range": "10.201.0.0/24"}), third,
                               "tcp", ips[0], "8000")  # from the other range into the default one
        assert out["errno"] == "timeout", out  # the host drops forwarding between sandbox links
        for box, _ in boxes:
            with box:
                assert _accepted(box) == []
    finally:
        other.close()
        third.close()


def test_a_failure_after_the_clone_ends_the_new_process(lab, probe_config, monkeypatch):
    """If registering the namespace's lease fails after the clone succeeded, the
    cloned process (still waiting for its id maps) is killed and reaped, its
    cgroup and stack go, and the namespace's lease is given back."""
    from sandbox.net.manager import JoinTarget

    _, sup = lab
    children_before = set(_children())

    def broken(self, pidfd):
        raise RuntimeError("lease registration failed")

    monkeypatch.setattr(JoinTarget, "spawned", broken)
    config = probe_config(net="egress", hostname="after-clone")
    with pytest.raises(RuntimeError, match="lease registration failed"):
        sandbox.run(["true"], config, supervisor=sup)
    monkeypatch.undo()
    assert set(_children()) <= children_before
    assert expect_probe_sup(probe_config(net="egress"), sup, "tcp", REMOTE, "7000")["errno"] == "OK"


def _children() -> list[int]:
    """Every child of this process, whichever thread cloned it."""
    out = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                out += [int(p) for p in f.read().split()]
        except FileNotFoundError:
            pass   # a thread that ended meanwhile
    return out
