"""What a caller may ask of a sandbox's network beyond the mode: the egress
allowlist, a DNS resolver, rate limits, the private address range, or an
existing namespace to join.  Frozen and hashable (it is part of Config, which
make_plan caches on); `validated()` raises ConfigError naming the field as
``network.<name>``.  Pure: no host access here.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from typing import Iterable

from ..errors import ConfigError

# Where sandboxes get their addresses unless told otherwise: a private block
# that home and cloud networks rarely use.  Each sandbox takes one /30.
DEFAULT_RANGE = "10.200.0.0/16"
SLOT_PREFIX = 30
PROTOS = ("tcp", "udp", "any")
_RULE = re.compile(r"^(?P<net>[0-9./]+?)(?::(?P<lo>\d+)(?:-(?P<hi>\d+))?)?(?:/(?P<proto>tcp|udp|any))?$")
_RATE = re.compile(r"^(?P<num>\d+(?:\.\d+)?)(?P<unit>|k|m|g|ki|mi|gi)$", re.IGNORECASE)
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30}
MAX_RULES = 256
MAX_RESOLVERS = 3  # what glibc's resolver reads from resolv.conf


def _field(name: str) -> str:
    return f"network.{name}"


@dataclass(frozen=True)
class AllowRule:
    """One allowed destination: an IPv4 network, a port range (0-0: every
    port) and a protocol (tcp, udp or any; "any" with ports means tcp and udp)."""

    network: str
    port_lo: int = 0
    port_hi: int = 0
    proto: str = "any"

    @classmethod
    def parse(cls, spec: str) -> "AllowRule":
        """``CIDR[:PORT[-PORT]][/tcp|/udp|/any]``, e.g. ``10.0.0.0/8:443/tcp``,
        ``192.0.2.7:5000-5010`` (an address alone is a /32)."""
        if not isinstance(spec, str):
            raise ConfigError(f"expected a string CIDR[:PORT[-PORT]][/PROTO], got {spec!r}", field=_field("allow"))
        m = _RULE.match(spec.strip())
        if not m:
            raise ConfigError(f"expected CIDR[:PORT[-PORT]][/tcp|udp|any], got {spec!r}", field=_field("allow"))
        lo = int(m["lo"]) if m["lo"] else 0
        hi = int(m["hi"]) if m["hi"] else lo
        if m["lo"] and not (lo and hi):
            raise ConfigError(f"ports are 1..65535 (leave the port out for every port), got {spec!r}",
                              field=_field("allow"))
        return cls(m["net"], lo, hi, m["proto"] or "any").validated()

    def validated(self) -> "AllowRule":
        name = _field("allow")
        net = _network(self.network, name)
        for port in (self.port_lo, self.port_hi):
            if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
                raise ConfigError(f"ports must be integers in [0, 65535], got {port!r}", field=name)
        if (self.port_lo == 0) != (self.port_hi == 0) or self.port_lo > self.port_hi:
            raise ConfigError(f"bad port range {self.port_lo}-{self.port_hi} (low <= high, both 1..65535)", field=name)
        if self.proto not in PROTOS:
            raise ConfigError(f"proto must be one of {PROTOS}, got {self.proto!r}", field=name)
        return replace(self, network=str(net))

    def __str__(self) -> str:
        ports = "" if not self.port_lo else f":{self.port_lo}" + (f"-{self.port_hi}" if self.port_hi != self.port_lo else "")
        return f"{self.network}{ports}/{self.proto}"


def _network(text, name: str) -> ipaddress.IPv4Network:
    if not isinstance(text, str):
        raise ConfigError(f"expected an IPv4 CIDR string, got {text!r}", field=name)
    try:
        return ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise ConfigError(f"{text!r} is not an IPv4 network ({exc}); write it as ADDRESS/PREFIX "
                          "with no host bits set", field=name) from None


def _address(text, name: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except (ValueError, TypeError):
        raise ConfigError(f"{text!r} is not an IPv4 address", field=name) from None


def parse_rate(text: str | int, name: str = "rate_bytes") -> int:
    """``1500000``, ``1.5m``, ``800ki`` (k/m/g: powers of 1000; ki/mi/gi: of 1024)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = _RATE.match(str(text).strip())
    if not m:
        raise ConfigError(f"expected a number with an optional k/m/g/ki/mi/gi suffix, got {text!r}", field=_field(name))
    return int(float(m["num"]) * _UNITS[m["unit"].lower()])


@dataclass(frozen=True)
class NetworkOptions:
    """allow: destinations egress may reach (empty: any, except other
    sandboxes and the host); dns: resolver addresses written to
    /etc/resolv.conf and allowed on port 53; rate_bytes / rate_packets: per
    direction, per second (None: unlimited); address_range: the private block
    sandbox addresses come from (a /30 each); netns_path / netns_fd: the
    namespace to join in mode ``netns`` (the fd stays the caller's)."""

    allow: tuple[AllowRule, ...] = ()
    dns: tuple[str, ...] = ()
    rate_bytes: int | None = None
    rate_packets: int | None = None
    address_range: str = DEFAULT_RANGE
    netns_path: str | None = None
    netns_fd: int | None = None

    @classmethod
    def create(cls, *, allow: Iterable[AllowRule | str] = (), dns: Iterable[str] | str = (),
               rate_bytes: int | str | None = None, **kwargs) -> "NetworkOptions":
        """Friendly types: allow as "CIDR[:PORT[-PORT]][/PROTO]" strings, one
        dns address or several, rate_bytes as "1.5m"."""
        if isinstance(allow, str):
            allow = (allow,)
        rules = tuple(r if isinstance(r, AllowRule) else AllowRule.parse(r) for r in allow)
        resolvers = (dns,) if isinstance(dns, str) else tuple(dns)
        rate = None if rate_bytes is None else parse_rate(rate_bytes)
        return cls(allow=rules, dns=resolvers, rate_bytes=rate, **kwargs).validated()

    def validated(self) -> "NetworkOptions":
        if not isinstance(self.allow, tuple) or len(self.allow) > MAX_RULES:
            raise ConfigError(f"must be a tuple of at most {MAX_RULES} rules", field=_field("allow"))
        allow = tuple((r if isinstance(r, AllowRule) else AllowRule.parse(r)).validated() for r in self.allow)
        space = _network(self.address_range, _field("address_range"))
        if not space.is_private or not 8 <= space.prefixlen <= SLOT_PREFIX - 2:
            raise ConfigError(f"must be a private IPv4 block of prefix /8../{SLOT_PREFIX - 2} (room for at least "
                              f"four /{SLOT_PREFIX} sandboxes), got {self.address_range!r}", field=_field("address_range"))
        if not isinstance(self.dns, tuple) or len(self.dns) > MAX_RESOLVERS:
            raise ConfigError(f"at most {MAX_RESOLVERS} resolver addresses", field=_field("dns"))
        dns = tuple(str(_address(d, _field("dns"))) for d in self.dns)
        for d in dns:
            if ipaddress.IPv4Address(d) in space:
                raise ConfigError(f"resolver {d} lies in the sandbox range {space}", field=_field("dns"))
            if ipaddress.IPv4Address(d).is_loopback or ipaddress.IPv4Address(d).is_unspecified:
                raise ConfigError(f"resolver {d} is not reachable from a sandbox (loopback is its own)",
                                  field=_field("dns"))
        for rule in allow:
            # A wider rule (10.0.0.0/8 around 10.200.0.0/16) is fine: the range is
            # refused before any allow rule.  One inside the range can never match.
            if ipaddress.IPv4Network(rule.network).subnet_of(space):
                raise ConfigError(f"{rule} lies in the sandbox range {space}: sandboxes never reach each other",
                                  field=_field("allow"))
        for name, low, high in (("rate_bytes", 1000, 10**11), ("rate_packets", 10, 10**8)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high):
                raise ConfigError(f"must be None or an integer in [{low}, {high}] per second, got {value!r}",
                                  field=_field(name))
        if self.netns_path is not None and (not isinstance(self.netns_path, str) or not self.netns_path.startswith("/")
                                            or "\0" in self.netns_path):
            raise ConfigError(f"must be an absolute path, got {self.netns_path!r}", field=_field("netns_path"))
        if self.netns_fd is not None and (isinstance(self.netns_fd, bool) or not isinstance(self.netns_fd, int)
                                          or self.netns_fd < 0):
            raise ConfigError(f"must be a file descriptor (int >= 0), got {self.netns_fd!r}", field=_field("netns_fd"))
        return replace(self, allow=allow, dns=dns, address_range=str(space))

    def check_mode(self, mode: str) -> None:
        """Options that only mean something in one mode are errors in others."""
        join = self.netns_path is not None or self.netns_fd is not None
        if mode == "netns":
            if (self.netns_path is None) == (self.netns_fd is None):
                raise ConfigError("mode 'netns' needs exactly one of netns_path or netns_fd", field=_field("netns_path"))
        elif join:
            raise ConfigError(f"netns_path/netns_fd need net='netns', not {mode!r}", field=_field("netns_path"))
        if mode != "egress":
            for name in ("allow", "dns", "rate_bytes", "rate_packets"):
                if getattr(self, name):
                    raise ConfigError(f"only applies to net='egress', not {mode!r}", field=_field(name))
            if self.address_range != DEFAULT_RANGE:
                raise ConfigError(f"only applies to net='egress', not {mode!r}", field=_field("address_range"))
