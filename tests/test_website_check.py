"""The website check against real HTTP and HTTPS servers on 127.0.0.1 named through host overrides."""
from __future__ import annotations

import pytest

from backoffice.checks import website
from backoffice.checks.http import GuardedClient, OutboundError
from backoffice.models import CheckOutcome
from tests.servers import LocalServer, html_page, make_certificates, redirect, tls_context

NAMES = ["Harbor Recovery Center", "Harbor Recovery Center LLC"]
HOSTS = ["harbor.clinic.test", "www.harbor.clinic.test", "elsewhere.test"]


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("tls"), HOSTS)


@pytest.fixture
def https_site(certificates):
    ca, cert, key = certificates
    pages = {}
    server = LocalServer(lambda path, headers: pages.get(path, html_page("Not found", 404)), tls_context(cert, key))
    server.pages = pages
    yield server
    server.close()


def client(ca=None) -> GuardedClient:
    return GuardedClient(allow_loopback_for_tests=True, ca_bundle=str(ca) if ca else None,
                         host_overrides={h: "127.0.0.1" for h in HOSTS}, connect_timeout=2, total_timeout=5)


def url(server, host="harbor.clinic.test", path="/"):
    return server.url(host, path)


def test_a_fine_https_site_passes(https_site, certificates):
    https_site.pages["/"] = html_page("<h1>Welcome to Harbor Recovery Center</h1><p>Admissions 24/7</p>")
    result = website.check(client(certificates[0]), url(https_site), NAMES)
    assert result.outcome == CheckOutcome.PASS, result.summary
    assert result.evidence["hops"][0]["address"] == "127.0.0.1"


def test_an_untrusted_certificate_fails(https_site):
    https_site.pages["/"] = html_page("Harbor Recovery Center")
    result = website.check(client(ca=None), url(https_site), NAMES)
    assert result.outcome == CheckOutcome.FAIL
    assert [f.subject_key for f in result.findings] == ["website:tls_certificate"]


def test_gone_site_404(https_site, certificates):
    result = website.check(client(certificates[0]), url(https_site, path="/old"), NAMES)
    assert result.outcome == CheckOutcome.FAIL
    assert "website:http_404" in {f.subject_key for f in result.findings}


def test_connection_refused(https_site, certificates):
    dead = url(https_site)
    https_site.close()
    result = website.check(client(certificates[0]), dead, NAMES)
    assert result.outcome == CheckOutcome.FAIL
    assert [f.subject_key for f in result.findings] == ["website:connection_refused"]


def test_redirect_within_the_domain_passes_and_off_domain_fails(https_site, certificates):
    https_site.pages["/"] = redirect(url(https_site, "www.harbor.clinic.test", "/home"))
    https_site.pages["/home"] = html_page("Harbor Recovery Center")
    assert website.check(client(certificates[0]), url(https_site), NAMES).outcome == CheckOutcome.PASS
    https_site.pages["/"] = redirect(url(https_site, "elsewhere.test", "/home"))
    result = website.check(client(certificates[0]), url(https_site), NAMES)
    assert result.outcome == CheckOutcome.FAIL
    assert {f.subject_key for f in result.findings} == {"website:off_domain"}


def test_a_page_that_no_longer_names_the_provider_fails(https_site, certificates):
    https_site.pages["/"] = html_page("<title>Domain for sale</title><script>var x='Harbor Recovery Center'</script>")
    result = website.check(client(certificates[0]), url(https_site), NAMES)
    assert {f.subject_key for f in result.findings} == {"website:not_named"}


def test_plain_http_is_a_warning_and_a_transient_error_is_raised_for_retry():
    server = LocalServer(lambda path, headers: html_page("Harbor Recovery Center"))
    try:
        result = website.check(client(), server.url("harbor.clinic.test"), NAMES)
        assert result.outcome == CheckOutcome.WARN
        assert {f.subject_key for f in result.findings} == {"website:no_https"}
    finally:
        server.close()
    slow = LocalServer(lambda path, headers: __import__("time").sleep(2) or html_page("late"))
    try:
        with pytest.raises(OutboundError):
            website.check(GuardedClient(allow_loopback_for_tests=True, connect_timeout=0.5, total_timeout=0.5),
                          slow.url(), NAMES)
    finally:
        slow.close()
