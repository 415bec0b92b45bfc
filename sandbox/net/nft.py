"""nftables: the rule texts (pure, unit-tested) and a small libnftables binding.

Two rule sets:
  sandbox_ruleset   inside each egress sandbox's namespace: no inbound
                    connection, nothing to the sandbox range (other sandboxes,
                    the host end), only the allowlist (and the resolver) out,
                    only its own source address.  It dies with the namespace.
  host_ruleset      one table per supervisor in the host namespace: NAT for the
                    range, no forwarding between sandbox links or into them, no
                    traffic from a sandbox to the host itself, reverse-path
                    check.  Removed at close, or by the janitor (janitor.py).

Rules are applied through libnftables (the library behind `nft`), loaded with
ctypes: one netlink transaction per text, ~1 ms, no process to spawn.  The
netlink socket is opened by nft_ctx_new in the calling thread's namespace.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import re

from ..errors import HostUnsupportedError, NetworkError
from .addresses import LINK_PREFIX
from .options import NetworkOptions

SANDBOX_TABLE = "sandbox"
_TABLE_NAME = re.compile(r"^sandbox_[0-9]+_[0-9a-f]+$")


@functools.lru_cache(maxsize=1)
def _lib():
    name = ctypes.util.find_library("nftables") or "libnftables.so.1"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise HostUnsupportedError(errno.ENOENT, f"libnftables not found ({exc})",
                                   hint="install nftables (apt-get install nftables), needed by net='egress'") from exc
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
    lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return lib


def run(text: str, what: str) -> str:
    """Apply `text` (nft syntax) atomically in this thread's network namespace;
    returns nft's output.  Raises NetworkError naming `what`."""
    lib = _lib()
    ctx = lib.nft_ctx_new(0)
    if not ctx:
        raise NetworkError(errno.ENOMEM, f"nft_ctx_new for {what}", "firewall")
    try:
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        rc = lib.nft_run_cmd_from_buffer(ctx, text.encode())
        if rc != 0:
            detail = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace").strip()
            raise NetworkError(errno.EINVAL, f"nft {what}: {detail[:400]}", "firewall")
        return (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
    finally:
        lib.nft_ctx_free(ctx)


def _allow_rules(options: NetworkOptions) -> list[str]:
    rules = []
    for ip in options.dns:
        rules += [f"ip daddr {ip} udp dport 53 accept", f"ip daddr {ip} tcp dport 53 accept"]
    if not options.allow:
        return rules + ["meta nfproto ipv4 accept"]
    for rule in options.allow:
        dest = f"ip daddr {rule.network}"
        if not rule.port_lo:
            proto = "" if rule.proto == "any" else f" meta l4proto {rule.proto}"
            rules.append(f"{dest}{proto} accept")
            continue
        ports = str(rule.port_lo) if rule.port_lo == rule.port_hi else f"{rule.port_lo}-{rule.port_hi}"
        for proto in (("tcp", "udp") if rule.proto == "any" else (rule.proto,)):
            rules.append(f"{dest} {proto} dport {ports} accept")
    return rules


def sandbox_ruleset(options: NetworkOptions, sandbox_ip: str, device: str = "eth0") -> str:
    """The firewall inside one sandbox's namespace (applied as root of the host
    user namespace: the sandbox cannot change it)."""
    limit = []
    if options.rate_packets:
        n = options.rate_packets
        limit = [f"limit rate over {n}/second burst {max(5, n // 20)} packets drop"]
    out = [
        "oif lo accept",
        *(f'oifname "{device}" {r}' for r in limit),
        # Only its own address: no spoofing (IP_FREEBIND needs no capability).
        f'oifname "{device}" ip saddr != {sandbox_ip} drop',
        "ct state established,related accept",
        # Other sandboxes and the host end of the veth are never destinations.
        f"ip daddr {options.address_range} reject with icmp type admin-prohibited",
        *_allow_rules(options),
        # Refuse fast rather than time out: the handler learns at once.
        "meta l4proto tcp reject with tcp reset",
        "reject with icmpx type admin-prohibited",
    ]
    return "\n".join([
        f"table inet {SANDBOX_TABLE} {{",
        "  chain input {",
        "    type filter hook input priority filter; policy drop;",
        "    iif lo accept",
        *(f'    iifname "{device}" {r}' for r in limit),
        "    ct state established,related accept",  # replies to what the sandbox started; nothing new comes in
        "  }",
        "  chain output {",
        "    type filter hook output priority filter; policy drop;",
        *("    " + r for r in out),
        "  }",
        "}",
    ]) + "\n"


def host_table_name(pid: int, token: str) -> str:
    return f"sandbox_{pid}_{token}"


def check_table_name(name: str) -> str:
    if not _TABLE_NAME.match(name):
        raise ValueError(f"not a sandbox table name: {name!r}")
    return name


def host_ruleset(table: str) -> str:
    """The supervisor's table in the host namespace.  Its drops apply to every
    sandbox link ("sbx*": other supervisors' too, which only repeats their own
    rules); a drop in any base chain is final whatever other tables accept."""
    links = f'"{LINK_PREFIX}*"'
    return "\n".join([
        f"table inet {check_table_name(table)} {{",
        "  chain prerouting {",
        "    type filter hook prerouting priority raw; policy accept;",
        # Reverse path: a packet from a sandbox link must come from that link's /30.
        f"    iifname {links} fib saddr . iif oif missing drop",
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
        f"    iifname {links} oifname {links} drop",
        f"    oifname {links} ct state established,related accept",
        f"    oifname {links} drop",
        "  }",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        f"    iifname {links} ct state established,related accept",
        f"    iifname {links} drop",
        "  }",
        "  chain output {",
        "    type filter hook output priority filter; policy accept;",
        f"    oifname {links} ct state established,related accept",
        f"    oifname {links} drop",
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        "  }",
        "}",
    ]) + "\n"


def masquerade_rule(table: str, address_range: str) -> str:
    """NAT for one sandbox range, leaving by any link but a sandbox's."""
    return (f"add rule inet {check_table_name(table)} postrouting "
            f'ip saddr {address_range} oifname != "{LINK_PREFIX}*" masquerade\n')


def delete_table_text(table: str) -> str:
    return f"delete table inet {check_table_name(table)}\n"
