"""Network isolation, planning side.  Modes (docs/network.md):

  loopback  (default) a private network namespace whose only interface, lo, is
            up; the child raises lo itself (ioctl in C)
  none      a private namespace with lo left down: no networking at all
  egress    a namespace the supervisor made ahead of time (sandbox/net/): lo up,
            a veth to the host with NAT and a default route, a firewall inside
            (no inbound, no other sandbox, the allowlist), rate limits
  netns     join a namespace the caller made (NetworkOptions.netns_path/_fd)

In the last two the child is cloned *into* an existing namespace owned by the
host's user namespace: the parent setns()es its clone thread there around
clone3 (spawn_locked in csrc/sandbox_core.c), and the sandbox, whose
capabilities only count in its own user namespace, cannot change that
namespace's links, addresses, routes or firewall."""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from .config import Config
from .errors import NetworkError
from .net.options import NetworkOptions


@dataclass(frozen=True)
class NetworkPlan:
    private_namespace: bool   # CLONE_NEWNET: a fresh namespace made by clone3
    loopback_up: bool         # the child raises lo (only in a namespace it owns)
    mode: str = "loopback"
    join: bool = False        # clone into an existing namespace given per spawn (egress, netns)
    options: NetworkOptions = NetworkOptions()


def plan_network(config: Config) -> NetworkPlan:
    if not config.enabled("net"):
        # Sharing the host's network namespace is only ever asked for by name.
        return NetworkPlan(private_namespace=False, loopback_up=False, mode="host")
    if config.net in ("egress", "netns"):
        return NetworkPlan(private_namespace=False, loopback_up=False, mode=config.net, join=True,
                           options=config.network)
    return NetworkPlan(private_namespace=True, loopback_up=config.net == "loopback", mode=config.net)


def resolv_conf(config: Config) -> str:
    """/etc/resolv.conf inside: the configured resolvers (egress), else a note."""
    if config.net == "egress" and config.network.dns:
        lines = [f"nameserver {ip}" for ip in config.network.dns]
        return "\n".join(lines + ["options timeout:2 attempts:2"]) + "\n"
    if config.net == "netns":
        return "# the joined network namespace is managed by the embedder; no resolver configured\n"
    return "# no resolver: the sandbox has no network beyond loopback\n"


def open_join_netns(options: NetworkOptions) -> tuple[int, bool]:
    """The descriptor of the namespace to join in mode `netns`, checked to be a
    network namespace: (fd, ours).  A path is opened per spawn (the caller may
    replace what it names); a caller's fd is used as is and never closed."""
    if options.netns_fd is not None:
        fd, ours, what = options.netns_fd, False, f"fd {options.netns_fd}"
    else:
        what = options.netns_path
        try:
            fd, ours = os.open(options.netns_path, os.O_RDONLY | os.O_CLOEXEC), True
        except OSError as exc:
            raise NetworkError(exc.errno, f"(netns-join) open {what} (the network namespace to join)", "netns-join") from exc
    try:
        check_netns_fd(fd, what)
    except BaseException:
        if ours:
            os.close(fd)
        raise
    return fd, ours


def check_netns_fd(fd: int, what: str) -> None:
    """Fail closed unless `fd` is a network namespace (nsfs inode of type net)."""
    from .net.nsfd import netns_type_matches

    try:
        ok = netns_type_matches(fd)
    except OSError as exc:
        raise NetworkError(exc.errno, f"(netns-join) {what} is not a namespace", "netns-join") from exc
    if not ok:
        raise NetworkError(errno.EINVAL, f"(netns-join) {what} is not a network namespace", "netns-join")


def list_links_in_namespace() -> list[tuple[str, bool]]:
    """(name, up) for every link in the current network namespace, via pyroute2.
    Used by probes inside the sandbox and by `sandbox doctor`."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        out = []
        for link in ipr.get_links():
            out.append((link.get_attr("IFLA_IFNAME"), bool(link["flags"] & 1)))
        return out
