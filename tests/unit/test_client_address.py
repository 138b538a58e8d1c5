"""Who a request counts against (control/clients.py): a trusted proxy's X-Forwarded-For is read
from the right, and nothing a client writes there itself is believed."""

import ipaddress

from media_service.control.clients import client_address

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


def test_without_trusted_proxies_the_connection_is_the_client():
    assert client_address("10.0.0.5", ["203.0.113.9"], ()) == "10.0.0.5"
    assert client_address(None, [], ()) == "unknown"


def test_an_untrusted_peer_cannot_name_another_client():
    assert client_address("198.51.100.7", ["203.0.113.9"], PROXIES) == "198.51.100.7"


def test_a_trusted_proxy_names_the_right_most_untrusted_hop():
    # The client wrote "1.2.3.4" itself; the ingress appended 203.0.113.9; an inner proxy 10.0.0.5.
    assert client_address("10.1.2.3", ["1.2.3.4, 203.0.113.9", "10.0.0.5"], PROXIES) == "203.0.113.9"
    assert client_address("::1", ["2001:db8::7"], PROXIES) == "2001:db8::7"


def test_only_proxies_in_the_chain_gives_the_first_of_them():
    assert client_address("10.1.2.3", ["10.9.9.9, 10.0.0.5"], PROXIES) == "10.9.9.9"
    assert client_address("10.1.2.3", [], PROXIES) == "10.1.2.3"  # a proxy that sent no header


def test_a_hop_that_is_not_an_address_is_taken_as_the_client():
    assert client_address("10.1.2.3", ["unknown, 10.0.0.5"], PROXIES) == "unknown"
