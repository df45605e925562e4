"""CIDR sets judged by the addresses they cover, not by their spelling: `[0.0.0.0/1,
128.0.0.0/1]` opens as much as `0.0.0.0/0`. Standard library only: the policy pack uses it too.

Public addresses are those outside the special-purpose ranges of the IANA registries
(https://www.iana.org/assignments/iana-ipv4-special-registry, ...-ipv6-special-registry), as
Python's `ipaddress` classifies them (`is_global`). A set may cover less than a /8's worth of
public IPv4 addresses (16,777,216: about 0.4 % of the space) and less than a /32's worth of
public IPv6 addresses; a company's or a cloud region's egress ranges are far smaller.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Optional

MAX_PUBLIC = {4: 2 ** 24, 6: 2 ** 96}
_NON_PUBLIC = {
    4: list(ipaddress.collapse_addresses(ipaddress.ip_network(n) for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4"))),
    # Everything but global unicast (2000::/3) is not public; inside it, documentation.
    6: list(ipaddress.collapse_addresses(ipaddress.ip_network(n) for n in (
        "::/3", "4000::/2", "8000::/1", "2001:db8::/32", "2001::/23"))),
}


def public_addresses(cidrs: Iterable[str]) -> dict[int, int]:
    """Public addresses covered by the set, per IP version (overlaps counted once)."""
    nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    out = {}
    for version in (4, 6):
        covered = list(ipaddress.collapse_addresses(n for n in nets if n.version == version))
        total = 0
        for net in covered:
            private = sum(p.num_addresses if p.subnet_of(net) else net.num_addresses
                          for p in _NON_PUBLIC[version] if p.overlaps(net))
            total += net.num_addresses - private
        out[version] = total
    return out


def too_open(cidrs: Iterable[str]) -> Optional[str]:
    """Why the set opens too much of the internet, or None."""
    counts = public_addresses(cidrs)
    for version, limit in MAX_PUBLIC.items():
        if counts[version] >= limit:
            bits = 32 if version == 4 else 128
            return (f"together these blocks open at least as many public IPv{version} addresses as "
                    f"a /{bits - counts[version].bit_length() + 1}; allow less than a "
                    f"/{bits - limit.bit_length() + 1} in all: your own networks' egress addresses")
    return None
