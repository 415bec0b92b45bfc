"""`sandbox run` network flags (sandbox/cli.py), kept here so the CLI module
stays small and the flags stay next to what they fill in (NetworkOptions)."""
from __future__ import annotations

from .options import DEFAULT_RANGE


def add_network_arguments(p) -> None:
    from ..config import NET_MODES

    p.add_argument("--net", choices=NET_MODES, default="loopback",
                   help="loopback: private netns with lo up (default); none: lo down; egress: outbound "
                        "only, through a veth with NAT, firewall and limits (docs/network.md); "
                        "netns: join --netns PATH")
    p.add_argument("--allow", action="append", default=[], metavar="CIDR[:PORT[-PORT]][/tcp|udp]",
                   help="egress: allow this destination (repeatable; none given: any destination)")
    p.add_argument("--dns", action="append", default=[], metavar="IP",
                   help="egress: resolver for /etc/resolv.conf, allowed on port 53 (repeatable, up to 3)")
    p.add_argument("--rate", metavar="BYTES_PER_S", help="egress: bandwidth per direction, e.g. 1m, 500k, 2mi")
    p.add_argument("--rate-packets", type=int, metavar="N", help="egress: packets per second per direction")
    p.add_argument("--address-range", default=DEFAULT_RANGE, metavar="CIDR",
                   help=f"egress: private block sandbox addresses come from (default {DEFAULT_RANGE})")
    p.add_argument("--netns", metavar="PATH", help="netns: the network namespace to join (e.g. /run/netns/x)")


def network_from_args(args) -> dict | None:
    """NetworkOptions.create arguments from the flags, or None if none was given."""
    options = {"allow": args.allow, "dns": args.dns, "rate_bytes": args.rate, "rate_packets": args.rate_packets,
               "address_range": args.address_range, "netns_path": args.netns}
    given = {k: v for k, v in options.items() if v not in (None, [], DEFAULT_RANGE)}
    return given or None
