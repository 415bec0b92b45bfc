"""Egress networking, parent side: namespaces the supervisor makes ahead of
time (a veth to the host, NAT, a firewall inside), handed to one sandbox each.
See docs/network.md.

Modules: options (the frozen, validated NetworkOptions in Config), nsfd
(setns/unshare around a thread), addresses (collision-free /30s across
supervisors, by flock), nft (libnftables and the rule texts), host (the
supervisor's nftables table, its janitor and ip_forward), tc (rate limits),
manager (the pool of pre-made namespaces and their leases), janitor (the
stand-alone process that removes a killed supervisor's table).

Planning (which mode, what the child does) is sandbox/network.py."""
from .options import AllowRule, NetworkOptions, parse_rate

__all__ = ["AllowRule", "NetworkOptions", "parse_rate"]
