"""Mail delivery: one RFC 5322 message per notification, sent over SMTP or written as an .eml file.

MAIL_URL says where mail goes:

- empty (development, tests): each message is written as an .eml file under OUTBOX_FOLDER, exactly the bytes
  SMTP would send, so any mail program opens it;
- ``smtp://user:password@host:587``: SMTP with STARTTLS, which the server must offer (the connection is refused
  otherwise, never sent in the clear);
- ``smtps://user:password@host:465``: SMTP over TLS from the first byte;
- ``smtp://host:25?tls=none``: a relay inside the deployment, in the clear and without a password.

Production refuses to start without MAIL_URL and MAIL_FROM (config.check_mail). Each outcome is classified as
the mail server meant it: 2xx sent, 4xx and lost connections temporary (tried again later), 5xx permanent.
"""
from __future__ import annotations

import re
import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape

SENT, TEMPORARY, PERMANENT = "sent", "temporary", "permanent"


class MailSettingError(RuntimeError):
    """MAIL_URL or MAIL_FROM cannot be used; the message names the setting and hides the password."""


@dataclass(frozen=True)
class MailServer:
    """Where SMTP mail goes, parsed from MAIL_URL."""

    host: str
    port: int
    tls: str  # "starttls", "implicit" or "none"
    username: str | None = None
    password: str | None = None

    def describe(self) -> str:
        security = {"starttls": "STARTTLS", "implicit": "TLS", "none": "no encryption"}[self.tls]
        who = f"{self.username}@" if self.username else ""
        return f"smtp {who}{self.host}:{self.port} ({security})"


def parse_mail_url(url: str) -> MailServer | None:
    """The SMTP server MAIL_URL names, or None for the .eml folder; refuses what cannot work with one line."""
    if not url:
        return None
    shown = re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise MailSettingError(f"MAIL_URL is not a URL: {shown!r}") from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise MailSettingError(
            f"MAIL_URL must be smtp://user:password@host:587 (STARTTLS) or smtps://user:password@host:465, "
            f"not {shown!r}")
    query = parse_qs(parts.query)
    tls = "implicit" if parts.scheme == "smtps" else "starttls"
    if query.get("tls") == ["none"]:
        if parts.scheme == "smtps":
            raise MailSettingError(f"MAIL_URL cannot be smtps:// and tls=none at once: {shown!r}")
        tls = "none"
    elif query:
        raise MailSettingError(f"MAIL_URL takes only ?tls=none, not {parts.query!r}")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if tls == "none" and username:
        raise MailSettingError("MAIL_URL sends a password in the clear with tls=none: use STARTTLS or smtps://")
    return MailServer(host=parts.hostname, port=port or (465 if tls == "implicit" else 587 if username else 25),
                      tls=tls, username=username, password=password)


def check_sender(sender: str) -> str:
    """MAIL_FROM as a display name and an address, e.g. 'Provider verification <no-reply@example.org>'."""
    name, address = parseaddr(sender)
    if not address or "@" not in address or address.startswith("@") or address.endswith("@"):
        raise MailSettingError(
            f"MAIL_FROM must be an address, e.g. 'Provider verification <no-reply@example.org>', not {sender!r}")
    return sender


def new_message_id(sender: str) -> str:
    """A Message-ID on the sender's domain, fixed before the first attempt."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "backoffice.invalid"
    return make_msgid(domain=domain)


_templates = Environment(loader=PackageLoader("backoffice", "templates/mail"),
                         autoescape=select_autoescape(default=True, default_for_string=True))
_URL = re.compile(r"https?://[^\s<>\"']+")


def _paragraphs(text: str) -> list[list[tuple[str, str]]]:
    """The text as paragraphs of (kind, piece), a URL being its own piece, for the HTML part to link."""
    result = []
    for block in re.split(r"\n\s*\n", text.strip()):
        pieces, last = [], 0
        for match in _URL.finditer(block):
            url = match.group(0).rstrip(".,;)")
            start, end = match.start(), match.start() + len(url)
            pieces.append(("text", block[last:start]))
            pieces.append(("link", url))
            last = end
        pieces.append(("text", block[last:]))
        result.append([piece for piece in pieces if piece[1]])
    return result


def absolute_link(link: str | None, base_url: str) -> str | None:
    """A page path stored with a message ("/portal/requests/7") made absolute on the public address."""
    if not link or not link.startswith("/"):
        return link
    return (base_url or "http://localhost").rstrip("/") + link


def build_message(note, sender: str, base_url: str = "", product: str = "Provider verification") -> EmailMessage:
    """The message exactly as it is sent or filed: text and HTML parts, the link, a stable Message-ID."""
    link = absolute_link(note.link, base_url)
    message = EmailMessage()
    message["Subject"] = note.subject
    message["From"] = sender
    message["To"] = Address(addr_spec=note.recipient_email)
    message["Date"] = format_datetime(note.created_at)
    message["Message-ID"] = note.message_id
    # RFC 3834: no out-of-office replies to a machine.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Backoffice-Kind"] = note.kind
    text = note.body.rstrip() + "\n"
    if link and link not in note.body:
        text += f"\nOpen the page: {link}\n"
    text += f"\n-- \n{product}. This message was sent automatically; replies are not read.\n"
    message.set_content(text, cte="quoted-printable")
    rendered = _templates.get_template("message.html").render(
        subject=note.subject, paragraphs=_paragraphs(note.body), link=link,
        link_in_body=bool(link and link in note.body), product=product)
    message.add_alternative(rendered, subtype="html", cte="quoted-printable")
    return message


def wire_bytes(message: EmailMessage) -> bytes:
    """The message as it travels: CRLF line ends (RFC 5322), the same bytes in an .eml file and over SMTP."""
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


@dataclass(frozen=True)
class Outcome:
    status: str  # SENT, TEMPORARY or PERMANENT
    reply: str


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}"[:1000]


def _judge(code: int, text) -> Outcome:
    return Outcome(PERMANENT if 500 <= code < 600 else TEMPORARY, _reply(code, text))


class FileTransport:
    """The embedded default: each message becomes an .eml file in the outbox folder."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def __enter__(self) -> "FileTransport":
        self.folder.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        return None

    def describe(self) -> str:
        return f"files in {self.folder}"

    def send(self, message: EmailMessage, name: str) -> Outcome:
        path = self.folder / f"{name}.eml"
        partial = path.with_suffix(".eml.partial")
        partial.write_bytes(wire_bytes(message))
        partial.replace(path)
        return Outcome(SENT, f"written to {path}")


class SmtpTransport:
    """One SMTP session for a batch; each message gets its own envelope and its own judged reply."""

    def __init__(self, server: MailServer, timeout: float = 30, ca_bundle: str = ""):
        self.server = server
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=ca_bundle or None)
        self.smtp: smtplib.SMTP | None = None

    def describe(self) -> str:
        return self.server.describe()

    def __enter__(self) -> "SmtpTransport":
        return self

    def __exit__(self, *exc) -> None:
        self._close()

    def _close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (smtplib.SMTPException, OSError):
                self.smtp.close()
            self.smtp = None

    def _connect(self) -> smtplib.SMTP:
        server = self.server
        if server.tls == "implicit":
            smtp = smtplib.SMTP_SSL(server.host, server.port, timeout=self.timeout, context=self.context)
        else:
            smtp = smtplib.SMTP(server.host, server.port, timeout=self.timeout)
        try:
            smtp.ehlo()
            if server.tls == "starttls":
                if not smtp.has_extn("starttls"):
                    raise smtplib.SMTPNotSupportedError("the server does not offer STARTTLS")
                smtp.starttls(context=self.context)
                smtp.ehlo()
            if server.username:
                smtp.login(server.username, server.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, message: EmailMessage, name: str) -> Outcome:
        """Send one message; a refusal is judged by its code, a lost connection is temporary."""
        try:
            if self.smtp is None:
                self.smtp = self._connect()
            return self._send(self.smtp, message)
        except smtplib.SMTPAuthenticationError as error:
            self._close()
            # A wrong password will not right itself, but an operator can: kept as temporary, with the reply.
            return Outcome(TEMPORARY, _reply(error.smtp_code, error.smtp_error))
        except smtplib.SMTPResponseException as error:
            self._close()
            return _judge(error.smtp_code, error.smtp_error)
        except smtplib.SMTPNotSupportedError as error:
            self._close()
            return Outcome(TEMPORARY, f"{self.server.host}:{self.server.port}: {error}")
        except (smtplib.SMTPException, ssl.SSLError, socket.timeout, OSError) as error:
            self._close()
            reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
            return Outcome(TEMPORARY, f"{self.server.host}:{self.server.port}: {reason}")

    @staticmethod
    def _send(smtp: smtplib.SMTP, message: EmailMessage) -> Outcome:
        sender = parseaddr(str(message["From"]))[1]
        recipient = parseaddr(str(message["To"]))[1]
        code, text = smtp.mail(sender)
        if code != 250:
            smtp.rset()
            return _judge(code, text)
        code, text = smtp.rcpt(recipient)
        if code not in (250, 251):
            smtp.rset()
            return _judge(code, text)
        code, text = smtp.data(wire_bytes(message))
        if code != 250:
            return _judge(code, text)
        return Outcome(SENT, _reply(code, text))


def transport_for(config: dict):
    """The transport the settings name: SMTP when MAIL_URL is set, the .eml folder otherwise."""
    server = parse_mail_url(config.get("MAIL_URL", ""))
    if server is None:
        return FileTransport(config["OUTBOX_FOLDER"])
    return SmtpTransport(server, timeout=config.get("MAIL_TIMEOUT_SECONDS", 30),
                         ca_bundle=config.get("MAIL_CA_BUNDLE", ""))

