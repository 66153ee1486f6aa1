"""Which hosts a job may reach: host patterns, and the addresses never allowed.

A pattern is an exact host name or address (`api.example.com`, `10.0.0.7`,
`::1`), a suffix (`*.example.com`: any name under it, not the bare domain), or
a network in CIDR notation (`10.0.0.0/8`). Names are compared case-blind.
The check runs twice: at intake on the URL's host, and at connect time on
every address the name resolved to, so a name that resolves (or rebinds)
to a forbidden address is still refused.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_INET_ATON = re.compile(r"(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}", re.IGNORECASE)

# Link-local (which holds the usual cloud metadata address 169.254.169.254) and the
# metadata addresses of clouds that use other ones: never a job's target.
FORBIDDEN_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32"))
# target.deny_private: the inside of gq's own network. Loopback, "this network" (0.0.0.0
# connects to the local host) and unspecified, RFC 1918, CGNAT (RFC 6598), unique-local IPv6.
PRIVATE_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "0.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
    "::1/128", "::/128", "fc00::/7"))
EMBEDDING_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96", "::/96"))


@functools.lru_cache(maxsize=4096)  # every job's host is checked; most jobs share a few hosts
def address(host: str) -> IPAddress | None:
    """The host as an IP address (IPv4-mapped IPv6 unwrapped), or None for a name.

    IPv4 in the forms the C library also accepts ("2852039166", "0xa9.0xfe.0xa9.0xfe",
    "10.1") counts as the address it connects to.
    """
    host = host.strip("[]").split("%")[0].rstrip(".")
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        if not _INET_ATON.fullmatch(host):
            return None
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return addr.ipv4_mapped
    return addr


@functools.lru_cache(maxsize=4096)  # every attempt asks; most jobs share a few hosts
def destination(url: str) -> str:
    """The key of a job's destination (its limits, circuit and metric label): the URL's
    address in its one canonical spelling ("127.2" is 127.0.0.2), else the name as the
    transport reads it (lower case, no trailing dot)."""
    try:
        host = url_host(url)
    except ValueError:  # a job accepted before intake read URLs this way: keyed by its text
        return url
    return canonical(host)


def canonical(host: str) -> str:
    """A host as destinations are keyed: an address in its one spelling, a name in lower
    case without brackets or a trailing dot."""
    addr = address(host)
    return str(addr) if addr is not None else host.strip("[]").rstrip(".").lower()


@functools.lru_cache(maxsize=4096)  # every job's URL is read at intake and by the dispatcher
def url_host(url: str) -> str:
    """A URL's host as the transport reads it: urllib3's parser (percent-decoded, IDNA,
    lower case), without brackets or a trailing dot. Raises ValueError for a URL that
    parsers would read differently: a backslash, a percent-encoded host, or an authority
    whose host or port another parser (urllib.parse) reads otherwise."""
    if "\\" in url:
        raise ValueError("contains a backslash, which URL parsers read differently")
    try:
        ours, other = parse_url(url), urlsplit(url)
        other_host, other_port = other.hostname or "", other.port
    except LocationParseError:  # its text quotes the URL, password included
        raise ValueError("not a valid URL: its host or port cannot be read") from None
    except ValueError as e:
        raise ValueError(f"not a valid URL: {e}") from None
    if "%" in other_host:
        raise ValueError("has a percent-encoded host")
    host = (ours.host or "").strip("[]")
    try:
        other_host = other_host.encode("idna").decode("ascii") if not other_host.isascii() else other_host
    except UnicodeError:
        raise ValueError(f"has a host that is not a valid name: {other_host!r}") from None
    if host.startswith((".", "*")) or ".." in host:  # requests would refuse to send it
        raise ValueError(f"has a host that is not a valid name: {host!r}")
    if host != other_host.lower() or ours.port != other_port:
        raise ValueError(f"has an authority that URL parsers read differently ({host!r} or {other_host!r})")
    return host.rstrip(".")


@functools.lru_cache(maxsize=4096)
def forbidden(addr: IPAddress) -> bool:
    """Link-local or metadata: never a job's target."""
    return _within(addr, FORBIDDEN_NETWORKS)


@functools.lru_cache(maxsize=4096)
def private(addr: IPAddress) -> bool:
    """Loopback, private or unique-local: refused with target.deny_private."""
    return _within(addr, PRIVATE_NETWORKS)


def _within(addr: IPAddress, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    if any(addr in network for network in networks if addr.version == network.version):
        return True
    if addr.version == 6 and any(addr in n for n in EMBEDDING_NETWORKS):
        inside = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)  # an IPv4 address inside (NAT64, ::a.b.c.d)
        return any(inside in network for network in networks if network.version == 4)
    return False


@dataclass(frozen=True)
class HostPatterns:
    """A set of host patterns; empty matches nothing."""

    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, patterns: tuple[str, ...] | list[str]) -> HostPatterns:
        """Raises ValueError naming the first pattern that is not one."""
        names, suffixes, networks = set(), [], []
        for pattern in patterns:
            p = pattern.strip().lower()
            if p.startswith("*."):
                if not p[2:] or "*" in p[2:]:
                    raise ValueError(f"not a host pattern: {pattern!r}")
                suffixes.append(p[1:])  # ".example.com"
            elif "/" in p:
                try:
                    networks.append(ipaddress.ip_network(p, strict=False))
                except ValueError:
                    raise ValueError(f"not a network (CIDR): {pattern!r}") from None
            elif not p or "*" in p or " " in p:
                raise ValueError(f"not a host pattern: {pattern!r}")
            else:
                addr = address(p)
                names.add(str(addr) if addr else p.rstrip("."))
        return cls(frozenset(names), tuple(suffixes), tuple(networks))

    def __bool__(self) -> bool:
        return bool(self.names or self.suffixes or self.networks)

    def match_name(self, host: str) -> bool:
        """The host (a name or a literal address) matches an exact or suffix pattern,
        or, being an address, a network."""
        host = host.lower().rstrip(".")
        addr = address(host)
        if addr is not None:
            return str(addr) in self.names or self.match_address(addr)
        return host in self.names or any(host.endswith(s) for s in self.suffixes)

    def match_address(self, addr: IPAddress) -> bool:
        return str(addr) in self.names or any(
            addr in network for network in self.networks if addr.version == network.version)


@dataclass(frozen=True)
class HostPolicy:
    """Where jobs may go: never to forbidden addresses, nor, with `deny_private`, to private
    ones (whatever `allowed` says); within `allowed` when it is set."""

    allowed: HostPatterns = HostPatterns()
    deny_private: bool = False

    def refuse_host(self, host: str) -> str | None:
        """At intake: why `host` is refused, or None. A name that only a network pattern
        could allow is let through here and decided at connect time, on its addresses."""
        addr = address(host)
        if addr is not None and forbidden(addr):
            return f"host {host} is a link-local or metadata address, always refused"
        if addr is not None and self.deny_private and private(addr):
            return f"host {host} is a loopback or private address, refused (target.deny_private)"
        if self.allowed and not self.allowed.match_name(host) and (addr is not None or not self.allowed.networks):
            return f"host {host} is not in target.allowed_hosts"
        return None

    def refuse_address(self, host: str, addr: IPAddress) -> str | None:
        """At connect time: why connecting to `addr` (resolved from `host`) is refused, or None."""
        if forbidden(addr):
            return f"{host} resolved to {addr}, a link-local or metadata address, always refused"
        if self.deny_private and private(addr):
            return f"{host} resolved to {addr}, a loopback or private address, refused (target.deny_private)"
        if self.allowed and not self.allowed.match_name(host) and not self.allowed.match_address(addr):
            return f"{host} resolved to {addr}, which target.allowed_hosts does not allow"
        return None
