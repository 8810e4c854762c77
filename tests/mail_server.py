"""A real SMTP server on 127.0.0.1 (aiosmtpd) for the mail tests: STARTTLS or TLS, AUTH, scripted replies.

It keeps every message it accepts, as parsed `EmailMessage`s. `replies` scripts what the server says to the
next DATA commands ("451 4.3.0 try later", "550 5.1.1 no such user"), one entry per message, in order;
`hold` makes it wait, after it has kept a message and before it answers, until released.
"""
from __future__ import annotations

import asyncio
import email
import socket
import threading
import time
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.servers import make_certificates, tls_context


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Handler:
    def __init__(self):
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.replies: list[str] = []
        self.hold = threading.Event()
        self.kept = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        if self.replies:
            return self.replies.pop(0)
        self.messages.append(email.message_from_bytes(envelope.content, policy=default))
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.kept.set()
        while self.hold.is_set():
            await asyncio.sleep(0.05)
        return f"250 2.0.0 Ok: queued as M{len(self.messages)}"


class SmtpServer:
    def __init__(self, folder: Path, *, security: str = "starttls", users: dict[str, str] | None = None):
        """security: "starttls" (required before MAIL), "implicit" (TLS from the first byte) or "none"."""
        self.ca, cert, key = make_certificates(folder, ["localhost"])
        self.handler = Handler()
        self.users = users or {}
        self.logins: list[str] = []
        self.port = free_port()
        context = tls_context(cert, key)
        options = {}
        if security == "starttls":
            options = {"tls_context": context, "require_starttls": True}
        elif security == "implicit":
            options = {"ssl_context": context}
        if self.users:
            # With implicit TLS the whole session is encrypted; aiosmtpd only counts STARTTLS as TLS for AUTH.
            options.update(authenticator=self._authenticate, auth_require_tls=security == "starttls",
                           auth_required=True)
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     server_hostname="localhost", **options)
        self.controller.start()

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            login, password = auth_data.login.decode(), auth_data.password.decode()
            if self.users.get(login) == password:
                self.logins.append(login)
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    @property
    def messages(self) -> list[EmailMessage]:
        return self.handler.messages

    def url(self, scheme: str = "smtp", user: str | None = None, password: str | None = None,
            query: str = "") -> str:
        credentials = f"{user}:{password}@" if user else ""
        return f"{scheme}://{credentials}localhost:{self.port}{'?' + query if query else ''}"

    def wait_for(self, count: int, timeout: float = 30) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.messages) >= count:
                return self.messages
            time.sleep(0.05)
        raise AssertionError(f"the mail server received {len(self.messages)} messages, not {count}")

    def close(self) -> None:
        self.handler.hold.clear()
        if self.controller.server is not None:
            self.controller.stop()


def text_part(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()


def html_part(message: EmailMessage) -> str:
    return message.get_body(("html",)).get_content()
