"""The one outbound HTTP client: every fetch of a URL we did not write ourselves goes through it.

Guards, at the first request and again at every redirect hop:
- only http and https, only ports 80 and 443;
- the host name is resolved once, and the request is refused when any answer is not a global
  address: every block of the IANA special-purpose registries (loopback, private, link-local incl.
  169.254.169.254, CGNAT 100.64/10, documentation, Teredo, site-local, ...), multicast, and IPv6 outside
  2000::/3; IPv4-mapped, 6to4 and NAT64 forms are judged by the IPv4 address they carry;
- the connection goes to the address that was checked (no second lookup a rebinding DNS could answer);
- a deadline for the whole fetch, a cap on the body size, and a minimum interval per host.

Tests admit 127.0.0.1 (on any port) only when the client is built with allow_loopback_for_tests.
"""
from __future__ import annotations

import functools
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol
from urllib.parse import urljoin, urlsplit

import redis

ALLOWED_SCHEMES = {"http", "https"}
ALLOWED_PORTS = {80, 443}
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
TEST_LOOPBACK = ipaddress.ip_address("127.0.0.1")

Resolver = Callable[[str, int], list[str]]


class OutboundRefused(Exception):
    """The request breaks the outbound policy; nothing was sent to that address."""


class OutboundError(Exception):
    """The fetch failed on the network. `transient` errors are worth retrying later."""

    def __init__(self, kind: str, detail: str, transient: bool):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.transient = transient

    def __reduce__(self):
        # Rebuilt from its own arguments: the default (the message alone) cannot call this __init__, and a
        # task that raised it would reach Celery as an UnpickleableExceptionWrapper.
        return type(self), (self.kind, self.detail, self.transient)


@dataclass
class Hop:
    url: str
    address: str
    status: int | None = None


@dataclass
class Response:
    url: str
    status: int
    headers: dict[str, str]
    body: bytes
    truncated: bool
    hops: list[Hop] = field(default_factory=list)
    elapsed_ms: int = 0

    def text(self) -> str:
        charset = "utf-8"
        content_type = self.headers.get("content-type", "")
        if "charset=" in content_type:
            charset = content_type.split("charset=", 1)[1].split(";")[0].strip() or "utf-8"
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")


def _blocks(*rows: tuple[str, str]) -> tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...]:
    return tuple((ipaddress.ip_network(cidr), name) for cidr, name in rows)


# The IANA special-purpose address registries (iana-ipv4-special-registry, iana-ipv6-special-registry), the
# multicast ranges and the deprecated IPv6 site-local block, named here rather than left to the ipaddress
# tables of whichever Python runs us (3.11 calls fec0::/10, 3fff::/20 and 192.88.99/24 global). A block is
# refused whole even where the registry marks an anycast address inside it reachable (192.0.0.9, 2001:1::1):
# no provider's website lives there. More specific blocks come first, so the refusal names the narrowest.
SPECIAL_PURPOSE_BLOCKS = _blocks(
    ("0.0.0.0/8", "'this network'"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation (TEST-NET-1)"),
    ("192.88.99.0/24", "the deprecated 6to4 relay anycast"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation (TEST-NET-2)"),
    ("203.0.113.0/24", "documentation (TEST-NET-3)"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "limited broadcast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("100::/64", "discard-only"),
    ("100:0:0:1::/64", "dummy prefix"),
    ("2001::/32", "Teredo"),
    ("2001:db8::/32", "documentation"),
    ("2001::/23", "IETF protocol assignments"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing (SRv6) SIDs"),
    ("fc00::/7", "unique-local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
)
IPV6_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")
# RFC 6052: where an IPv4 address sits in a NAT64 address, by the prefix length the network chose, as
# (bit offset from the left, bit count) pieces; bits 64-71 are always skipped. Inside the local-use /48 a
# network may choose /48, /56, /64 or /96, and we cannot know which, so every one of them is judged.
NAT64_EMBEDDINGS = {48: ((48, 16), (72, 16)), 56: ((56, 8), (72, 24)), 64: ((72, 32),), 96: ((96, 32),)}


def _nat64_embedded(ip: ipaddress.IPv6Address, prefix_length: int) -> ipaddress.IPv4Address:
    value = 0
    for offset, bits in NAT64_EMBEDDINGS[prefix_length]:
        value = (value << bits) | ((int(ip) >> (128 - offset - bits)) & ((1 << bits) - 1))
    return ipaddress.IPv4Address(value)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address reaches through mapping, 6to4 or NAT64 (empty for none)."""
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip in NAT64_WELL_KNOWN:
        return [_nat64_embedded(ip, 96)]
    if ip in NAT64_LOCAL_USE:
        return list(dict.fromkeys(_nat64_embedded(ip, length) for length in NAT64_EMBEDDINGS))
    return []


def address_problem(address: str, allow_loopback_for_tests: bool = False) -> str | None:
    """Why an address may not be contacted, or None when it is a global unicast address."""
    ip = ipaddress.ip_address(address)
    if allow_loopback_for_tests and ip == TEST_LOOPBACK:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv6 form that carries an IPv4 address is judged by the IPv4 address it reaches.
        embedded = _embedded_ipv4(ip)
        if embedded:
            for reached in embedded:
                problem = address_problem(str(reached))
                if problem:
                    return f"{problem} (inside {ip})"
            return None
    for block, name in SPECIAL_PURPOSE_BLOCKS:
        if ip in block:
            return f"{ip} is {name} ({block})"
    if isinstance(ip, ipaddress.IPv6Address) and ip not in IPV6_GLOBAL_UNICAST:
        return f"{ip} is outside the IPv6 global unicast range ({IPV6_GLOBAL_UNICAST})"
    # What a newer Python knows and the table above does not yet.
    for attribute in ("is_unspecified", "is_loopback", "is_link_local", "is_multicast", "is_reserved",
                      "is_private"):
        if getattr(ip, attribute):
            return f"{ip} is {attribute[3:].replace('_', '-')}"
    if not ip.is_global:
        return f"{ip} is not a global address"
    return None


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


class RateLimiter(Protocol):
    def wait(self, host: str) -> None: ...


class LocalRateLimiter:
    """At most one request per host per interval within this process."""

    def __init__(self, interval_seconds: float):
        self.interval = interval_seconds
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait(self, host: str) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next.get(host, 0.0))
            self._next[host] = start + self.interval
        if start > now:
            time.sleep(start - now)


class RedisRateLimiter:
    """At most one request per host per interval across every worker sharing one Redis."""

    def __init__(self, redis_client, interval_seconds: float, max_wait_seconds: float):
        self.redis = redis_client
        self.interval_ms = max(1, int(interval_seconds * 1000))
        self.max_wait = max_wait_seconds

    def wait(self, host: str) -> None:
        deadline = time.monotonic() + self.max_wait
        key = f"outbound:host:{host}"
        while not self.redis.set(key, b"1", nx=True, px=self.interval_ms):
            if time.monotonic() > deadline:
                raise OutboundError("rate_limited", f"{host} is busy; try later", transient=True)
            ttl = self.redis.pttl(key)
            time.sleep(max(ttl, 10) / 1000)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to a given, already checked address; the Host header keeps the name."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext):
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._context = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        # The certificate is checked against the name, not the address we pinned.
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)


@functools.lru_cache(maxsize=8)
def _tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """One context per CA bundle, shared by every fetch: building one loads the whole CA store, about
    20 ms of CPU, which made TLS set-up the main cost of a website check."""
    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()


@dataclass
class GuardedClient:
    connect_timeout: float = 5.0
    total_timeout: float = 20.0
    max_bytes: int = 2_000_000
    max_redirects: int = 5
    user_agent: str = "provider-backoffice-recheck/1.0"
    ca_bundle: str | None = None
    host_overrides: dict[str, str] = field(default_factory=dict)
    allow_loopback_for_tests: bool = False
    resolver: Resolver = system_resolver
    rate_limiter: RateLimiter | None = None

    @classmethod
    def from_config(cls, config, rate_limiter: RateLimiter | None = None, **overrides) -> "GuardedClient":
        settings = dict(
            connect_timeout=float(config["OUTBOUND_CONNECT_TIMEOUT_SECONDS"]),
            total_timeout=float(config["OUTBOUND_TOTAL_TIMEOUT_SECONDS"]),
            max_bytes=int(config["OUTBOUND_MAX_BYTES"]),
            max_redirects=int(config["OUTBOUND_MAX_REDIRECTS"]),
            user_agent=config["OUTBOUND_USER_AGENT"],
            ca_bundle=config["OUTBOUND_CA_BUNDLE"] or None,
            host_overrides=dict(config["OUTBOUND_HOST_OVERRIDES"] or {}),
            allow_loopback_for_tests=bool(config["OUTBOUND_ALLOW_LOOPBACK_FOR_TESTS"]),
            rate_limiter=rate_limiter,
        )
        settings.update(overrides)
        return cls(**settings)

    def get(self, url: str, headers: dict[str, str] | None = None) -> Response:
        """GET a URL, following redirects through the guards; raises OutboundRefused or OutboundError."""
        started = time.monotonic()
        deadline = started + self.total_timeout
        hops: list[Hop] = []
        current = url
        for _ in range(self.max_redirects + 1):
            scheme, host, port, target = self._split(current)
            address = self._checked_address(host, port)
            self._check_port(port, address)
            hops.append(Hop(url=current, address=address))
            if self.rate_limiter is not None:
                self.rate_limiter.wait(host)
            status, response_headers, body, truncated = self._request(
                scheme, host, port, address, target, headers or {}, deadline
            )
            hops[-1].status = status
            location = response_headers.get("location")
            if status in REDIRECT_STATUSES and location:
                current = urljoin(current, location.strip())
                continue
            return Response(url=current, status=status, headers=response_headers, body=body, truncated=truncated,
                            hops=hops, elapsed_ms=int((time.monotonic() - started) * 1000))
        raise OutboundRefused(f"more than {self.max_redirects} redirects, last to {current}")

    def _split(self, url: str) -> tuple[str, str, int, str]:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise OutboundRefused(f"not a valid URL: {url!r} ({exc})") from None
        scheme = parts.scheme.lower()
        if scheme not in ALLOWED_SCHEMES:
            raise OutboundRefused(f"scheme {scheme or '(none)'!r} is not allowed; only http and https")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise OutboundRefused(f"no host in {url!r}")
        if parts.username or parts.password:
            raise OutboundRefused("URLs with credentials are not fetched")
        port = port or (443 if scheme == "https" else 80)
        if not self.allow_loopback_for_tests:
            self._check_port(port, None)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        return scheme, host, port, target

    def _check_port(self, port: int, address: str | None) -> None:
        # Test servers listen on random ports: with the test switch, 127.0.0.1 may use any port.
        if port in ALLOWED_PORTS or (self.allow_loopback_for_tests and address == str(TEST_LOOPBACK)):
            return
        raise OutboundRefused(f"port {port} is not allowed; only 80 and 443")

    def _literal_or_override(self, host: str) -> str | None:
        if host.lower() in self.host_overrides:
            return self.host_overrides[host.lower()]
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            return None

    def _checked_address(self, host: str, port: int) -> str:
        """Resolve once; refuse unless every answer is global; return the address to connect to."""
        fixed = self._literal_or_override(host)
        if fixed is not None:
            addresses = [fixed]
        else:
            try:
                addresses = self.resolver(host, port)
            except socket.gaierror as exc:
                # "Temporary failure in name resolution" is worth a retry; "Name or service not known" is not.
                transient = exc.errno == socket.EAI_AGAIN
                raise OutboundError("dns", f"{host} could not be resolved ({exc.strerror or exc})", transient) from None
        if not addresses:
            raise OutboundError("dns", f"{host} has no addresses", transient=False)
        for address in addresses:
            problem = address_problem(address, self.allow_loopback_for_tests)
            if problem:
                raise OutboundRefused(f"{host} resolves to a non-global address: {problem}")
        return addresses[0]

    def _context(self) -> ssl.SSLContext:
        return _tls_context(self.ca_bundle)

    def _request(self, scheme, host, port, address, target, headers, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise OutboundError("timeout", f"no time left before {host}", transient=True)
        timeout = min(self.connect_timeout, remaining)
        if scheme == "https":
            conn = _PinnedHTTPSConnection(host, port, address, timeout, self._context())
        else:
            conn = _PinnedHTTPConnection(host, port, address, timeout)
        try:
            conn.putrequest("GET", target, skip_accept_encoding=True)
            # identity only: a compressed body could expand past the size cap after we checked it.
            all_headers = {"User-Agent": self.user_agent, "Accept-Encoding": "identity",
                           "Accept": "text/html,application/json;q=0.9,*/*;q=0.5", **headers}
            for name, value in all_headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            response = conn.getresponse()
            body, truncated = self._read_capped(conn, response, deadline)
            response_headers = {name.lower(): value for name, value in response.getheaders()}
            return response.status, response_headers, body, truncated
        except ssl.SSLCertVerificationError as exc:
            raise OutboundError("tls_certificate", f"{host}: {exc.verify_message or exc}", transient=False) from None
        except ssl.SSLError as exc:
            raise OutboundError("tls", f"{host}: {exc}", transient=False) from None
        except ConnectionRefusedError:
            raise OutboundError("connection_refused", f"{host} ({address}) refused the connection",
                                transient=False) from None
        except (socket.timeout, TimeoutError):
            raise OutboundError("timeout", f"{host} did not answer in time", transient=True) from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise OutboundError("network", f"{host}: {exc.__class__.__name__}: {exc}", transient=True) from None
        finally:
            conn.close()

    def _read_capped(self, conn, response, deadline) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        while size <= self.max_bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OutboundError("timeout", "the body did not arrive within the time cap", transient=True)
            if conn.sock is not None:
                conn.sock.settimeout(min(self.connect_timeout, remaining))
            chunk = response.read1(min(65536, self.max_bytes + 1 - size))
            if not chunk:
                return b"".join(chunks), False
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)[: self.max_bytes], True


_limiters: dict[tuple, RateLimiter] = {}


def client_for(config, **overrides) -> GuardedClient:
    """A client from configuration, sharing one rate limiter per process (or one Redis for all workers)."""
    interval = int(config["OUTBOUND_PER_HOST_INTERVAL_MS"]) / 1000
    key = (config.get("REDIS_URL"), interval)
    limiter = _limiters.get(key)
    if limiter is None:
        if config.get("REDIS_URL"):
            limiter = RedisRateLimiter(redis.Redis.from_url(config["REDIS_URL"]), interval,
                                       max_wait_seconds=float(config["OUTBOUND_TOTAL_TIMEOUT_SECONDS"]))
        else:
            limiter = LocalRateLimiter(interval)
        _limiters[key] = limiter
    return GuardedClient.from_config(config, rate_limiter=limiter, **overrides)
