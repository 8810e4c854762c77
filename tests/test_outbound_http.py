"""The guarded outbound client against real servers on 127.0.0.1: what it refuses, and what it caps."""
from __future__ import annotations

import ipaddress
import time

import pytest

from backoffice.checks.http import GuardedClient, LocalRateLimiter, OutboundError, OutboundRefused, address_problem
from tests.servers import LocalServer, html_page, redirect


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.0.0.2", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "100.127.255.254", "0.0.0.0", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255", "192.0.2.10",
    "198.18.0.1", "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "::ffff:127.0.0.1",
    "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:100.64.0.1", "2002:a00:1::1", "2001:db8::1",
])
def test_non_global_addresses_are_refused(address):
    assert address_problem(address) is not None
    # The test switch admits exactly 127.0.0.1, nothing else.
    if address != "127.0.0.1":
        assert address_problem(address, allow_loopback_for_tests=True) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:93.184.215.14"])
def test_global_addresses_pass(address):
    assert address_problem(address) is None


# Every block of the IANA special-purpose address registries (iana-ipv4-special-registry,
# iana-ipv6-special-registry), the multicast ranges and the deprecated IPv6 site-local block, each with
# addresses inside it, and what the refusal must name: the block itself, or for the IPv6 forms that carry
# an IPv4 address, the IPv4 block the embedded address falls in.
SPECIAL_PURPOSE = [
    # (block, addresses inside it, the block the refusal names)
    ("0.0.0.0/8", ["0.0.0.0", "0.255.255.255"], "0.0.0.0/8"),
    ("10.0.0.0/8", ["10.0.0.1", "10.255.255.255"], "10.0.0.0/8"),
    ("100.64.0.0/10", ["100.64.0.1", "100.127.255.254"], "100.64.0.0/10"),
    ("127.0.0.0/8", ["127.0.0.2", "127.255.255.255"], "127.0.0.0/8"),
    ("169.254.0.0/16", ["169.254.169.254", "169.254.0.1"], "169.254.0.0/16"),
    ("172.16.0.0/12", ["172.16.5.4", "172.31.255.255"], "172.16.0.0/12"),
    ("192.0.0.0/24", ["192.0.0.1", "192.0.0.8", "192.0.0.9", "192.0.0.10", "192.0.0.170", "192.0.0.255"],
     "192.0.0.0/24"),
    ("192.0.2.0/24", ["192.0.2.10"], "192.0.2.0/24"),
    ("192.88.99.0/24", ["192.88.99.1", "192.88.99.255"], "192.88.99.0/24"),
    ("192.168.0.0/16", ["192.168.1.1", "192.168.255.255"], "192.168.0.0/16"),
    ("198.18.0.0/15", ["198.18.0.1", "198.19.255.255"], "198.18.0.0/15"),
    ("198.51.100.0/24", ["198.51.100.7"], "198.51.100.0/24"),
    ("203.0.113.0/24", ["203.0.113.99"], "203.0.113.0/24"),
    ("224.0.0.0/4", ["224.0.0.1", "239.255.255.250"], "224.0.0.0/4"),
    ("240.0.0.0/4", ["240.0.0.1", "255.255.255.254"], "240.0.0.0/4"),
    ("255.255.255.255/32", ["255.255.255.255"], "255.255.255.255/32"),
    ("::/128", ["::"], "::/128"),
    ("::1/128", ["::1"], "::1/128"),
    ("::ffff:0:0/96", ["::ffff:0:0", "::ffff:10.0.0.1", "::ffff:169.254.169.254"], None),
    ("64:ff9b::/96", ["64:ff9b::a00:1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe"], None),
    # Local-use NAT64: where the IPv4 address sits depends on the prefix length the network chose (RFC 6052
    # allows /48, /56, /64 and /96 inside it), so 10.0.0.1 at the /64 position is refused like at /96.
    ("64:ff9b:1::/48", ["64:ff9b:1::a00:1", "64:ff9b:1:0:a:0:100::", "64:ff9b:1::"], None),
    ("100::/64", ["100::1", "100::ffff:ffff:ffff:ffff"], "100::/64"),
    ("100:0:0:1::/64", ["100:0:0:1::1"], "100:0:0:1::/64"),
    ("2001::/32 (Teredo)", ["2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:0:808:808:0:0:808:808"],
     "2001::/32"),
    ("2001::/23", ["2001:1::1", "2001:2::1", "2001:3::1", "2001:4:112::1", "2001:10::1", "2001:20::1",
                   "2001:30::1", "2001:1ff:ffff::1"], "2001::/23"),
    ("2001:db8::/32", ["2001:db8::1", "2001:db8:ffff::1"], "2001:db8::/32"),
    ("2002::/16", ["2002:a00:1::1", "2002:7f00:1::1", "2002:c0a8:101::1", "2002::1"], None),
    ("3fff::/20", ["3fff::1", "3fff:fff:ffff::1"], "3fff::/20"),
    ("5f00::/16", ["5f00::1"], "5f00::/16"),
    ("fc00::/7", ["fc00::1", "fd12:3456::1"], "fc00::/7"),
    ("fe80::/10", ["fe80::1", "febf::1"], "fe80::/10"),
    ("fec0::/10", ["fec0::1", "feff:ffff::1"], "fec0::/10"),
    ("ff00::/8", ["ff02::1", "ff0e::1"], "ff00::/8"),
    # Outside 2000::/3 nothing is global unicast: the deprecated IPv4-compatible form and unassigned space.
    ("::/96 (IPv4-compatible)", ["::808:808", "::a00:1"], None),
    ("4000::/2 (unassigned)", ["4000::1", "8000::1", "c000::1"], None),
]


@pytest.mark.parametrize("block, addresses, named", SPECIAL_PURPOSE, ids=[row[0] for row in SPECIAL_PURPOSE])
def test_every_special_purpose_block_is_refused_and_named(block, addresses, named):
    for address in addresses:
        problem = address_problem(address)
        assert problem is not None, f"{address} ({block}) was admitted"
        shown = str(ipaddress.ip_address(address))  # the refusal names the address in its canonical form
        assert problem.startswith(f"{shown} is ") or problem.endswith(f"(inside {shown})"), problem
        if named:
            assert named in problem, problem
        assert address_problem(address, allow_loopback_for_tests=True) is not None


@pytest.mark.parametrize("address, problem", [
    ("fec0::1", "fec0::1 is site-local (fec0::/10)"),
    ("64:ff9b::a00:1", "10.0.0.1 is private (10.0.0.0/8) (inside 64:ff9b::a00:1)"),
    ("2002:a9fe:a9fe::1", "169.254.169.254 is link-local (169.254.0.0/16) (inside 2002:a9fe:a9fe::1)"),
    ("::ffff:100.64.0.1", "100.64.0.1 is shared address space (CGNAT) (100.64.0.0/10) (inside ::ffff:6440:1)"),
])
def test_the_refusal_says_what_the_address_is(address, problem):
    assert address_problem(address) == problem


@pytest.mark.parametrize("address", [
    "1.1.1.1", "8.8.4.4", "100.63.255.255", "100.128.0.1", "172.15.255.255", "172.32.0.1", "192.0.1.255",
    "192.0.3.1", "192.88.98.255", "192.169.0.1", "198.17.255.255", "198.20.0.1", "223.255.255.254",
    "2001:4860:4860::8888", "2001:200::1", "2a00:1450:4001:82b::200e", "2c0f:fb50:4003::1", "3fff:1000::1",
    "2620:fe::fe",
    # The IPv6 forms that carry a global IPv4 address reach that address.
    "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
])
def test_real_global_addresses_of_both_families_are_admitted(address):
    assert address_problem(address) is None


@pytest.fixture
def site():
    pages = {"/": html_page("Harbor Recovery Center")}
    server = LocalServer(lambda path, headers: pages.get(path, html_page("gone", 404)))
    server.pages = pages
    yield server
    server.close()


def client(**settings) -> GuardedClient:
    settings.setdefault("allow_loopback_for_tests", True)
    settings.setdefault("connect_timeout", 2)
    settings.setdefault("total_timeout", 5)
    return GuardedClient(**settings)


def test_loopback_is_refused_without_the_explicit_test_setting(site):
    with pytest.raises(OutboundRefused, match="non-global"):
        GuardedClient(host_overrides={"clinic.test": "127.0.0.1"}).get("http://clinic.test/")
    with pytest.raises(OutboundRefused):
        GuardedClient().get(site.url())
    assert site.hits == []
    assert client().get(site.url()).status == 200


def test_only_http_and_https_on_ports_80_and_443(site):
    for url in ("ftp://example.org/", "file:///etc/passwd", "gopher://example.org/", "http://example.org:8080/",
                "https://example.org:22/", "http://user:pw@example.org/"):
        with pytest.raises(OutboundRefused):
            client(resolver=lambda host, port: ["93.184.215.14"]).get(url)


def test_redirect_to_a_private_address_is_refused_at_the_hop(site):
    site.pages["/"] = redirect("http://10.0.0.5/admin")
    with pytest.raises(OutboundRefused, match="10.0.0.5"):
        client().get(site.url())
    site.pages["/"] = redirect("http://169.254.169.254/latest/meta-data/")
    with pytest.raises(OutboundRefused, match="169.254.169.254"):
        client().get(site.url())
    site.pages["/"] = redirect("http://[::ffff:127.0.0.1]:%d/" % site.port)
    with pytest.raises(OutboundRefused):
        client().get(site.url())
    assert site.hits == ["/", "/", "/"]


def test_redirect_to_a_name_that_resolves_privately_is_refused(site):
    site.pages["/"] = redirect("http://internal.clinic.test/")
    answers = {"internal.clinic.test": ["192.168.0.10"]}
    with pytest.raises(OutboundRefused, match="192.168.0.10"):
        client(resolver=lambda host, port: answers[host]).get(site.url())


def test_a_name_with_any_private_answer_is_refused(site):
    resolver = lambda host, port: ["93.184.215.14", "10.1.2.3"]  # noqa: E731
    with pytest.raises(OutboundRefused, match="10.1.2.3"):
        client(resolver=resolver).get("http://mixed.clinic.test/")


def test_rebinding_resolver_public_then_private_is_asked_once_and_the_checked_address_is_used(site):
    """A resolver that answers 127.0.0.1 (admitted in tests) first and a private address next."""
    calls = []

    def rebinding(host, port):
        calls.append(host)
        return ["127.0.0.1"] if len(calls) == 1 else ["10.0.0.1"]

    site.pages["/"] = html_page("Harbor Recovery Center")
    url = f"http://rebind.clinic.test:{site.port}/"
    response = client(resolver=rebinding).get(url)
    # One lookup for one hop, and the connection went to the address that was checked.
    assert calls == ["rebind.clinic.test"]
    assert response.hops[0].address == "127.0.0.1"
    # A redirect to the same name is looked up again, and this time refused.
    site.pages["/"] = redirect("/next")
    with pytest.raises(OutboundRefused, match="10.0.0.1"):
        client(resolver=rebinding).get(url)


def test_size_cap_truncates_and_time_cap_stops_a_slow_server(site):
    site.pages["/big"] = (200, {"Content-Type": "text/html"}, b"x" * 50_000)
    response = client(max_bytes=10_000).get(site.url(path="/big"))
    assert response.truncated and len(response.body) == 10_000

    def slow(path, headers):
        time.sleep(3)
        return html_page("late")

    slow_server = LocalServer(slow)
    try:
        started = time.monotonic()
        with pytest.raises(OutboundError) as caught:
            client(connect_timeout=1, total_timeout=1).get(slow_server.url())
        assert caught.value.kind == "timeout" and caught.value.transient
        assert time.monotonic() - started < 2.5
    finally:
        slow_server.close()


def test_too_many_redirects_are_refused(site):
    site.pages["/"] = redirect("/")
    with pytest.raises(OutboundRefused, match="redirects"):
        client(max_redirects=3).get(site.url())
    assert len(site.hits) == 4


def test_connection_refused_is_a_clear_permanent_error(site):
    port = site.port
    site.close()
    with pytest.raises(OutboundError) as caught:
        client().get(f"http://127.0.0.1:{port}/")
    assert caught.value.kind == "connection_refused" and not caught.value.transient


def test_per_host_rate_limit_spaces_requests(site):
    limited = client(rate_limiter=LocalRateLimiter(0.3))
    started = time.monotonic()
    for _ in range(3):
        limited.get(site.url())
    assert time.monotonic() - started >= 0.6
