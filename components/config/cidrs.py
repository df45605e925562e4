"""CIDR sets judged by the addresses they cover, not by their spelling: `[0.0.0.0/1,
128.0.0.0/1]` opens as much as `0.0.0.0/0`. Standard library only: the policy pack uses it too.

Public addresses are those outside the special-purpose ranges of the IANA IPv4 registry
(https://www.iana.org/assignments/iana-ipv4-special-registry) listed below. A set may cover
less than a /8's worth of public IPv4 addresses (16,777,216: about 0.4 % of the space); a
company's or a cloud region's egress ranges are far smaller. IPv4 only: the cluster is.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Optional

MAX_PUBLIC = 2 ** 24
NON_PUBLIC = list(ipaddress.collapse_addresses(ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4")))


def public_addresses(cidrs: Iterable[str]) -> int:
    """Public IPv4 addresses covered by the set (overlaps counted once). ValueError for a block
    that is not IPv4."""
    total = 0
    for net in ipaddress.collapse_addresses(ipaddress.IPv4Network(c, strict=False) for c in cidrs):
        private = sum(p.num_addresses if p.subnet_of(net) else net.num_addresses
                      for p in NON_PUBLIC if p.overlaps(net))
        total += net.num_addresses - private
    return total


def too_open(cidrs: Iterable[str]) -> Optional[str]:
    """Why the set opens too much of the internet, or None."""
    count = public_addresses(cidrs)
    if count < MAX_PUBLIC:
        return None
    return (f"together these blocks open at least as many public IPv4 addresses as a "
            f"/{33 - count.bit_length()}; allow less than a /8 in all: your own networks' egress "
            "addresses")
