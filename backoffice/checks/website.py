"""The website check: reachable, HTTPS valid, still on the provider's own domain, still names the provider."""
from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

from backoffice.checks import names
from backoffice.checks.http import GuardedClient, OutboundError, OutboundRefused, Response
from backoffice.checks.result import CheckResult, FindingSpec
from backoffice.models import CheckOutcome, FindingSeverity

# Second-level labels under which registrations happen one level deeper (example.co.uk, county.ca.us).
_SECOND_LEVEL = {"co", "com", "org", "net", "gov", "ac", "edu", "k12", "ca", "ny", "tx", "fl", "state"}


def site_domain(host: str) -> str:
    """The registrable part of a host name, approximated without a public-suffix list."""
    labels = host.lower().rstrip(".").split(".")
    if len(labels) >= 3 and labels[-2] in _SECOND_LEVEL and len(labels[-1]) == 2:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def same_site(original_url: str, final_url: str) -> bool:
    original = urlsplit(original_url).hostname or ""
    final = urlsplit(final_url).hostname or ""
    if original == final:
        return True
    return site_domain(original) == site_domain(final)


def page_text(body: str) -> str:
    body = re.sub(r"(?is)<(script|style|noscript)\b.*?</\1>", " ", body)
    return html.unescape(re.sub(r"(?s)<[^>]+>", " ", body))


def names_provider(text: str, provider_names: list[str]) -> str | None:
    """The first provider name the page carries (all its significant words), or None."""
    words = set(names.tokens(text))
    joined = " ".join(names.tokens(text))
    for name in provider_names:
        key = names.business_key(name)
        if not key:
            continue
        if f" {key} " in f" {joined} ":
            return name
        significant = [w for w in key.split() if len(w) > 2]
        if significant and all(w in words for w in significant):
            return name
    return None


def _unreachable(url: str, exc: OutboundError) -> CheckResult:
    titles = {
        "connection_refused": "Website refuses connections",
        "dns": "Website domain does not resolve",
        "tls_certificate": "Website HTTPS certificate is not valid",
        "tls": "Website HTTPS connection fails",
    }
    title = titles.get(exc.kind, "Website unreachable")
    evidence = {"url": url, "error": exc.kind, "detail": exc.detail}
    return CheckResult(CheckOutcome.FAIL, f"{title}: {exc.detail}"[:500], evidence,
                       [FindingSpec(f"website:{exc.kind}", FindingSeverity.WARNING, title, evidence)])


def check(client: GuardedClient, url: str | None, provider_names: list[str]) -> CheckResult:
    """Fetch the provider's site and judge it. Transient network errors propagate for the task to retry."""
    if not url:
        return CheckResult(CheckOutcome.WARN, "No website on file", {},
                           [FindingSpec("website:missing", FindingSeverity.INFO, "No website on file")])
    try:
        response = client.get(url)
    except OutboundRefused as exc:
        evidence = {"url": url, "refused": str(exc)}
        return CheckResult(CheckOutcome.FAIL, f"Website not fetched: {exc}"[:500], evidence,
                           [FindingSpec("website:refused", FindingSeverity.WARNING,
                                        "Website refused by the outbound policy (non-public address, port, "
                                        "scheme or redirect loop)", evidence)])
    except OutboundError as exc:
        if exc.transient:
            raise
        return _unreachable(url, exc)
    return judge(url, response, provider_names)


def judge(url: str, response: Response, provider_names: list[str]) -> CheckResult:
    evidence = {
        "url": url, "final_url": response.url, "status": response.status,
        "hops": [{"url": h.url, "address": h.address, "status": h.status} for h in response.hops],
        "elapsed_ms": response.elapsed_ms, "bytes": len(response.body), "truncated": response.truncated,
    }
    found: list[FindingSpec] = []
    if response.status >= 400:
        found.append(FindingSpec(f"website:http_{response.status}", FindingSeverity.WARNING,
                                 f"Website answers HTTP {response.status}", evidence))
    if not same_site(url, response.url):
        found.append(FindingSpec("website:off_domain", FindingSeverity.WARNING,
                                 f"Website redirects off the provider's domain to {urlsplit(response.url).hostname}",
                                 evidence))
    if response.status < 400:
        named = names_provider(page_text(response.text()), provider_names)
        evidence["names_provider"] = named
        if named is None:
            found.append(FindingSpec("website:not_named", FindingSeverity.WARNING,
                                     "Website no longer names the provider", evidence))
    if urlsplit(response.url).scheme != "https":
        found.append(FindingSpec("website:no_https", FindingSeverity.INFO, "Website is not served over HTTPS",
                                 evidence))
    if not found:
        return CheckResult(CheckOutcome.PASS, f"Website reachable over HTTPS and names the provider ({response.url})"[:500],
                           evidence)
    serious = [f for f in found if f.severity != FindingSeverity.INFO]
    outcome = CheckOutcome.FAIL if serious else CheckOutcome.WARN
    return CheckResult(outcome, "; ".join(f.title for f in found)[:500], evidence, found)
