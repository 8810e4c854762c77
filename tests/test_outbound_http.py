"""The guarded outbound client against real servers on 127.0.0.1: what it refuses, and what it caps."""
from __future__ import annotations

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
