"""Network isolation.  Modes: `loopback` (default: a private network namespace
whose only interface, lo, is up) and `none` (a private namespace with lo left
down: no networking at all).  The child raises lo itself (ioctl in C)."""
from __future__ import annotations

from dataclasses import dataclass

from .config import Config


@dataclass(frozen=True)
class NetworkPlan:
    private_namespace: bool
    loopback_up: bool


def plan_network(config: Config) -> NetworkPlan:
    if not config.enabled("net"):
        # Sharing the host's network namespace is only ever asked for by name.
        return NetworkPlan(private_namespace=False, loopback_up=False)
    return NetworkPlan(private_namespace=True, loopback_up=config.net == "loopback")


def list_links_in_namespace() -> list[tuple[str, bool]]:
    """(name, up) for every link in the current network namespace, via pyroute2.
    Used by probes inside the sandbox and by `sandbox doctor`."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        out = []
        for link in ipr.get_links():
            out.append((link.get_attr("IFLA_IFNAME"), bool(link["flags"] & 1)))
        return out
