"""Network planning without the kernel: options parsing and validation (errors
name the field), the rule texts, the mode -> plan mapping, the encoded clone
flags, address slots and ip_forward bookkeeping against temporary files."""
import ipaddress
import os

import pytest

from sandbox import Config
from sandbox._core import lib
from sandbox.errors import ConfigError, NetworkError
from sandbox.net import AllowRule, NetworkOptions, nft, parse_rate
from sandbox.net import forwarding
from sandbox.net.addresses import SlotAllocator
from sandbox.net.locks import lock_file, sweep
from sandbox.network import plan_network, resolv_conf
from sandbox.plan import EncodedPlan, make_plan


@pytest.mark.parametrize("spec, want", [
    ("10.9.0.0/16:443/tcp", AllowRule("10.9.0.0/16", 443, 443, "tcp")),
    ("192.0.2.7", AllowRule("192.0.2.7/32", 0, 0, "any")),
    ("192.0.2.0/24:5000-5010", AllowRule("192.0.2.0/24", 5000, 5010, "any")),
    ("198.51.100.0/24/udp", AllowRule("198.51.100.0/24", 0, 0, "udp")),
])
def test_allow_rules_parse(spec, want):
    assert AllowRule.parse(spec) == want


@pytest.mark.parametrize("spec", ["10.0.0.1/8", "10.0.0.0/33", "nope", "10.0.0.0/8:0", "10.0.0.0/8:9-3",
                                  "10.0.0.0/8:70000", "10.0.0.0/8/icmp", "::1/128", ""])
def test_bad_allow_rules_name_the_field(spec):
    with pytest.raises(ConfigError) as info:
        AllowRule.parse(spec)
    assert info.value.field == "network.allow"


@pytest.mark.parametrize("kwargs, field", [
    ({"dns": "not-an-ip"}, "network.dns"),
    ({"dns": "10.200.0.9"}, "network.dns"),          # inside the sandbox range
    ({"dns": "127.0.0.53"}, "network.dns"),          # the sandbox's own loopback
    ({"dns": ("1.1.1.1", "1.0.0.1", "8.8.8.8", "8.8.4.4")}, "network.dns"),
    ({"allow": ["10.200.4.0/24"]}, "network.allow"),  # overlaps the sandbox range
    ({"rate_bytes": 10}, "network.rate_bytes"),
    ({"rate_packets": 0}, "network.rate_packets"),
    ({"rate_packets": True}, "network.rate_packets"),
    ({"address_range": "8.8.0.0/16"}, "network.address_range"),  # not private
    ({"address_range": "10.0.0.0/30"}, "network.address_range"),  # too small
    ({"netns_path": "relative"}, "network.netns_path"),
    ({"netns_fd": -1}, "network.netns_fd"),
])
def test_bad_options_name_the_field(kwargs, field):
    with pytest.raises(ConfigError) as info:
        NetworkOptions.create(**kwargs)
    assert info.value.field == field


@pytest.mark.parametrize("text, value", [("1500000", 1500000), ("1.5m", 1500000), ("800ki", 819200),
                                         ("2G", 2 * 10**9), (4096, 4096)])
def test_parse_rate(text, value):
    assert parse_rate(text) == value


@pytest.mark.parametrize("kwargs, field", [
    ({"net": "loopback", "network": {"dns": "192.0.2.53"}}, "network.dns"),
    ({"net": "none", "network": {"allow": ["192.0.2.0/24"]}}, "network.allow"),
    ({"net": "egress", "network": {"netns_fd": 3}}, "network.netns_path"),
    ({"net": "netns"}, "network.netns_path"),
    ({"net": "netns", "network": {"netns_fd": 3, "netns_path": "/proc/1/ns/net"}}, "network.netns_path"),
    ({"net": "egress", "disable": ["net"]}, "net"),
    ({"net": "wifi"}, "net"),
])
def test_mode_and_options_must_agree(kwargs, field):
    with pytest.raises(ConfigError) as info:
        Config.create(**kwargs)
    assert info.value.field == field


def test_config_stays_hashable_and_cacheable():
    a = Config.create(net="egress", network={"allow": ["192.0.2.0/24:443/tcp"], "rate_bytes": "1m"})
    b = Config.create(net="egress", network=NetworkOptions.create(allow=["192.0.2.0/24:443/tcp"], rate_bytes=10**6))
    assert a == b and hash(a) == hash(b)
    assert make_plan(a) is make_plan(b)
    assert a.to_dict()["network"]["allow"] == ["192.0.2.0/24:443/tcp"]


def test_plans_per_mode():
    assert plan_network(Config()).private_namespace and plan_network(Config()).loopback_up
    egress = plan_network(Config.create(net="egress"))
    assert egress.join and not egress.private_namespace and not egress.loopback_up and egress.mode == "egress"
    join = plan_network(Config.create(net="netns", network={"netns_path": "/proc/1/ns/net"}))
    assert join.join and join.mode == "netns"
    assert plan_network(Config.create(disable=["net"])).mode == "host"


def test_encoded_plan_joins_instead_of_making_a_namespace():
    plain = EncodedPlan(make_plan(Config()))
    assert plain.base.clone_flags & lib.CLONE_NEWNET and not plain.base.join_netns and plain.base.netns_fd == -1
    egress = EncodedPlan(make_plan(Config.create(net="egress")))
    assert not egress.base.clone_flags & lib.CLONE_NEWNET and egress.base.join_netns == 1
    assert not egress.base.loopback_up  # the supervisor raised lo; the child could not
    with pytest.raises(ValueError):
        egress.for_prepare((), -1)  # a join without a namespace never reaches the core


def test_resolv_conf():
    assert resolv_conf(Config.create(net="egress", network={"dns": ["192.0.2.53", "192.0.2.54"]})) == (
        "nameserver 192.0.2.53\nnameserver 192.0.2.54\noptions timeout:2 attempts:2\n")
    assert resolv_conf(Config()).startswith("#")


def test_sandbox_ruleset():
    options = NetworkOptions.create(allow=["192.0.2.0/24:443/tcp", "198.51.100.7:5000-5010"], dns="192.0.2.53",
                                    rate_packets=1000)
    text = nft.sandbox_ruleset(options, "10.200.0.2")
    chain_in = text[text.index("chain input"):text.index("chain output")]
    assert "policy drop" in chain_in and "ct state established,related accept" in chain_in
    assert "new" not in chain_in  # nothing new comes in, ever
    lines = [line.strip() for line in text[text.index("chain output"):].splitlines()]
    order = [lines.index(r) for r in (
        'oifname "eth0" limit rate over 1000/second burst 50 packets drop',
        'oifname "eth0" ip saddr != 10.200.0.2 drop',
        "ip daddr 10.200.0.0/16 reject with icmp type admin-prohibited",
        "ip daddr 192.0.2.53 udp dport 53 accept",
        "ip daddr 192.0.2.0/24 tcp dport 443 accept",
        "ip daddr 198.51.100.7/32 tcp dport 5000-5010 accept",
        "ip daddr 198.51.100.7/32 udp dport 5000-5010 accept",
        "meta l4proto tcp reject with tcp reset",
    )]
    assert order == sorted(order)  # the range block comes before any accept
    assert "meta nfproto ipv4 accept" not in lines  # an allowlist means: nothing else
    assert "meta nfproto ipv4 accept" in nft.sandbox_ruleset(NetworkOptions(), "10.200.0.2")


def test_host_ruleset_and_names():
    text = nft.host_ruleset("sandbox_12_ab01")
    assert 'iifname "sbx*" oifname "sbx*" drop' in text and 'oifname "sbx*" drop' in text
    assert "fib saddr . iif oif missing drop" in text
    assert nft.masquerade_rule("sandbox_12_ab01", "10.200.0.0/16").startswith(
        "add rule inet sandbox_12_ab01 postrouting ip saddr 10.200.0.0/16")
    for bad in ("sandbox_1_x; flush ruleset", "filter", "sandbox_a_1"):
        with pytest.raises(ValueError):
            nft.host_ruleset(bad)


def test_slots_do_not_collide_across_allocators(tmp_path):
    a = SlotAllocator("10.200.0.0/28", str(tmp_path))  # 4 slots
    b = SlotAllocator("10.200.0.0/27", str(tmp_path))  # overlapping range, another "supervisor"
    taken = [a.acquire() for _ in range(2)] + [b.acquire() for _ in range(6)]
    networks = [slot.network for slot, _ in taken]
    assert len(set(networks)) == 8 and all(n.prefixlen == 30 for n in networks)
    slot = taken[0][0]
    assert (slot.host_ip, slot.sandbox_ip) == (str(slot.network[1]), str(slot.network[2]))
    assert len(slot.link) <= 15 and slot.link.startswith("sbx")
    with pytest.raises(NetworkError) as info:
        b.acquire()
    assert info.value.stage_name == "address"
    for s, fd in taken:
        a.release(s, fd)  # lock files are named by address: any allocator of the directory
    assert os.listdir(tmp_path) == []


def test_slot_in_use_is_skipped_and_unheld_locks_are_swept(tmp_path):
    alloc = SlotAllocator("10.200.0.0/29", str(tmp_path))
    first = alloc._slot(alloc._cursor)
    slot, fd = alloc.acquire(in_use=lambda s: s == first)
    assert slot != first
    assert os.path.exists(alloc.lock_path(first))  # left for the sweep: its namespace may still exist
    assert sweep(str(tmp_path)) == 1
    assert os.listdir(tmp_path) == [os.path.basename(alloc.lock_path(slot))]  # held: kept
    alloc.release(slot, fd)


def test_ip_forward_is_restored_by_the_last_user(tmp_path):
    forward = tmp_path / "ip_forward"
    forward.write_text("0\n")
    locks = str(tmp_path / "locks")
    one = forwarding.acquire(locks, str(forward))
    two = forwarding.acquire(locks, str(forward))
    assert forward.read_text() == "1"
    assert not forwarding.release(one, locks, str(forward)) and forward.read_text() == "1"
    assert forwarding.release(two, locks, str(forward)) and forward.read_text().strip() == "0"
    assert not os.path.exists(locks)


def test_ip_forward_already_on_is_left_on(tmp_path):
    forward = tmp_path / "ip_forward"
    forward.write_text("1\n")
    locks = str(tmp_path / "locks")
    users = forwarding.acquire(locks, str(forward))
    assert not forwarding.release(users, locks, str(forward))
    assert forward.read_text().strip() == "1"


def test_dead_users_janitor_restores(tmp_path):
    forward = tmp_path / "ip_forward"
    forward.write_text("0\n")
    locks = str(tmp_path / "locks")
    users = forwarding.acquire(locks, str(forward))
    os.close(users)  # the supervisor died: its flock went with it
    assert forwarding.release(None, locks, str(forward)) and forward.read_text().strip() == "0"


def test_lock_file_is_exclusive(tmp_path):
    path = str(tmp_path / "x.lock")
    fd = lock_file(path, blocking=False)
    assert lock_file(path, blocking=False) is None
    os.close(fd)
    fd = lock_file(path, blocking=False)
    assert fd is not None
    os.close(fd)


def test_options_are_frozen():
    options = NetworkOptions.create(allow=["192.0.2.0/24"])
    with pytest.raises(AttributeError):
        options.allow = ()
    assert ipaddress.IPv4Network(options.allow[0].network)
