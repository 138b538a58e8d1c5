"""Who a request comes from, for the per-client caps: its connection's address, or, when that is a
trusted reverse proxy (`--trusted-proxies`), the client the proxy names in `X-Forwarded-For`.

Why the right-most address: each proxy appends the address it was reached from, so the entries
left of the last untrusted one were written by the client itself and prove nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def client_address(remote: str | None, forwarded_for: Iterable[str], proxies: Sequence[Network]) -> str:
    """The client a request is counted against. `forwarded_for`: every `X-Forwarded-For` header
    of the request, in order."""
    client = remote or "unknown"
    if not proxies or not _trusted(client, proxies):
        return client
    hops = [h.strip() for header in forwarded_for for h in header.split(",") if h.strip()]
    for hop in reversed(hops):
        client = hop
        if not _trusted(hop, proxies):
            break
    return client
