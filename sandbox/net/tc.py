"""Bandwidth limits: a token bucket (tbf) as the root qdisc of each end of a
sandbox's veth, so each direction is shaped where it leaves: the sandbox end
for what the sandbox sends, the host end for what it receives.  Shaping (a
queue) rather than policing (drops) keeps TCP near the set rate.  Set by the
supervisor through its netlink socket in each namespace; the sandbox has no
CAP_NET_ADMIN over either.

Packet rates are nftables `limit` rules in the sandbox's own firewall
(nft.sandbox_ruleset): this kernel family may lack the tc police action
(CONFIG_NET_ACT_POLICE), nftables' limit is always there with nf_tables.
Both count what the kernel handles: a GSO/TSO super-packet counts once for
packets and by its full size for bytes.
"""
from __future__ import annotations

from ..errors import NetworkError

MAX_RATE = (1 << 32) - 1  # tbf's 32-bit rate field (pyroute2 has no TCA_TBF_RATE64)
LATENCY = "50ms"          # queue bound: at most this much traffic waits in the bucket's queue


def burst_bytes(rate: int) -> int:
    """20 ms worth of the rate, and at least enough for a few full 64 KiB
    GSO packets (the veth keeps GSO), so a burst never stalls a packet."""
    return max(rate // 50, 3 * 65536)


def shape(ipr, device: str, rate: int) -> None:
    """tbf of `rate` bytes/s on `device` (in the namespace `ipr` was opened in)."""
    try:
        index = ipr.link_lookup(ifname=device)[0]
        ipr.tc("add", "tbf", index, 0x10000, rate=min(rate, MAX_RATE), burst=burst_bytes(rate), latency=LATENCY)
    except (OSError, IndexError) as exc:
        raise NetworkError(getattr(exc, "errno", 0) or 19, f"tc qdisc add dev {device} root tbf rate {rate}B/s",
                           "rate-limit") from exc
