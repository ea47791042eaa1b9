"""E-mail over SMTP: multipart text + HTML with the message's headers and a Message-ID we keep.

The SMTP conversation is smtplib's, not Django's mail backend, so every server reply can be classified:
a 4xx reply, a dropped connection or a timeout is a TransientSendError (worth retrying), a 5xx reply or a
refused recipient a PermanentSendError, both carrying the server's code and text. Connections are kept per
server and per thread and reused between messages (a relay's handshake costs more than the message).
"""

import re
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass
from email.utils import formataddr, parseaddr
from typing import Any

from django.conf import settings
from django.core.mail import BadHeaderError, EmailMultiAlternatives, get_connection
from django.core.mail.message import sanitize_address
from django.core.mail.utils import DNS_NAME
from django.utils.module_loading import import_string

from tertulia.channels.base import OutboundMessage, PermanentSendError, SendResult, TransientSendError

PROVIDER = "smtp"
DEFAULT_TIMEOUT = 15.0
# A pooled connection idle for longer than this is checked with NOOP first: relays drop idle clients.
IDLE_CHECK_SECONDS = 10.0


def _domain(address: str) -> str:
    bare = parseaddr(address)[1]
    return bare.rpartition("@")[2] or str(DNS_NAME)


def sender_for_store(from_email: str, store_name: str) -> str:
    """The configured sender shown with the store's name: 'Tienda <no-reply@...>'."""
    display, address = parseaddr(from_email)
    if not address:
        return from_email
    return formataddr((store_name or display, address))


_MSG_ID = re.compile(r"^<[^<>\s]{1,400}>$")
_ADDRESS = re.compile(r"^[^@\s<>,;]{1,64}@[^@\s<>,;]{1,255}$")  # one bare address, nothing else
MAX_REFERENCES = 20


def reply_references(message: OutboundMessage) -> list[str]:
    """References of a reply (RFC 5322 3.6.4): the parent's References, then the parent's Message-ID.

    The inbox puts the parent's References in reply_context["references"]; anything that is not one
    msg-id is dropped (it would break the header). Of a long thread the oldest are left out first, except
    the first, the thread's root, which clients thread by.
    """
    ids = [value for value in (message.reply_context or {}).get("references") or []
           if isinstance(value, str) and _MSG_ID.match(value)]
    if message.in_reply_to and message.in_reply_to not in ids:
        ids.append(message.in_reply_to)
    ids = list(dict.fromkeys(ids))
    return ids if len(ids) <= MAX_REFERENCES else [ids[0], *ids[-(MAX_REFERENCES - 1):]]


def email_build(message: OutboundMessage, *, from_email: str, reply_to: str = "") -> EmailMultiAlternatives:
    """The e-mail exactly as it goes out (SMTP) or is kept (outbox); its Message-ID is set here so we know it.

    A reply to mail that came in through a support mailbox (listening's e-mail source) goes out From and
    Reply-To that mailbox's address (reply_context["reply_from"]), with the store's name shown, so the
    person's answer comes back to the mailbox the conversation is read from.
    """
    from email.utils import make_msgid

    sender = message.from_address or from_email
    reply_from = str((message.reply_context or {}).get("reply_from") or "").strip()
    if reply_from and not message.from_address and _ADDRESS.match(reply_from):
        sender = formataddr((parseaddr(from_email)[0], reply_from))
        reply_to = reply_from
    headers = {name: value for name, value in (message.headers or {}).items() if name.lower() != "message-id"}
    headers["Message-ID"] = make_msgid(idstring=f"d{message.delivery_id}", domain=_domain(sender))
    if message.in_reply_to:
        headers.setdefault("In-Reply-To", message.in_reply_to)
        headers.setdefault("References", " ".join(reply_references(message)) or message.in_reply_to)
    email = EmailMultiAlternatives(subject=message.subject, body=message.text, from_email=sender, to=[message.to],
                                   headers=headers, reply_to=[reply_to] if reply_to else None)
    if message.html:
        email.attach_alternative(message.html, "text/html")
    return email


def email_render(message: OutboundMessage, *, from_email: str, reply_to: str = "") -> tuple[EmailMultiAlternatives, bytes]:
    """The message and its MIME bytes; PermanentSendError when it cannot be a valid e-mail (bad address, header)."""
    try:
        email = email_build(message, from_email=from_email, reply_to=reply_to)
        return email, email.message().as_bytes(linesep="\r\n")
    except (BadHeaderError, ValueError, UnicodeError) as exc:
        raise PermanentSendError(f"The message cannot be sent as e-mail: {exc}", provider=PROVIDER,
                                 code="invalid_message", response={"error": str(exc)}) from None


@dataclass(frozen=True, slots=True)
class SmtpServer:
    host: str
    port: int = 25
    username: str = ""
    password: str = ""
    use_tls: bool = False  # STARTTLS after connecting
    use_ssl: bool = False  # TLS from the first byte (port 465)
    timeout: float = DEFAULT_TIMEOUT

    def __repr__(self) -> str:  # never the password
        return f"SmtpServer({self.host}:{self.port}, user={self.username!r}, tls={self.use_tls}, ssl={self.use_ssl})"

    def connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        if self.use_ssl:
            connection: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            connection = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            connection.ehlo()
            if self.use_tls:
                connection.starttls(context=context)
                connection.ehlo()
            if self.username:
                connection.login(self.username, self.password)
        except BaseException:
            _close(connection)
            raise
        return connection


class _Pool(threading.local):
    def __init__(self) -> None:
        self.connections: dict[SmtpServer, tuple[smtplib.SMTP, float]] = {}


_pool = _Pool()


def _close(connection: smtplib.SMTP) -> None:
    try:
        connection.quit()
    except (smtplib.SMTPException, OSError):
        try:
            connection.close()
        except OSError:
            pass


def connections_close() -> None:
    """Close this thread's pooled SMTP connections (the dispatcher calls it when it stops; tests too)."""
    for connection, _ in _pool.connections.values():
        _close(connection)
    _pool.connections.clear()


def _connection(server: SmtpServer) -> smtplib.SMTP:
    pooled = _pool.connections.pop(server, None)
    if pooled is not None:
        connection, last_used = pooled
        if time.monotonic() - last_used < IDLE_CHECK_SECONDS:
            return connection
        try:
            if connection.noop()[0] == 250:
                return connection
        except (smtplib.SMTPException, OSError):
            pass
        _close(connection)
    return server.connect()


def _reply_error(code: int, text: Any, *, what: str, response: dict[str, Any]) -> Exception:
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    response = {**response, "smtp_code": code, "smtp_message": text}
    message = f"SMTP {what}: {code} {text}"
    if 400 <= code < 500:
        return TransientSendError(message, provider=PROVIDER, response=response, code="smtp_temporary")
    return PermanentSendError(message, provider=PROVIDER, response=response, code="smtp_rejected")


def smtp_error(exc: BaseException, *, response: dict[str, Any] | None = None) -> Exception:
    """Classify an smtplib/socket error: transient (4xx, network, timeout) or permanent (5xx, refused, auth)."""
    response = dict(response or {})
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        (recipient, (code, text)), *_ = exc.recipients.items()
        return _reply_error(code, text, what="recipient refused", response={**response, "recipient": recipient})
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return _reply_error(exc.smtp_code, exc.smtp_error, what="sender refused", response=response)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        error = _reply_error(exc.smtp_code, exc.smtp_error, what="authentication failed", response=response)
        if isinstance(error, PermanentSendError):
            error.code = "auth_failed"
        return error
    if isinstance(exc, smtplib.SMTPResponseException):  # SMTPDataError, SMTPConnectError, SMTPHeloError...
        return _reply_error(exc.smtp_code, exc.smtp_error, what="error", response=response)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return PermanentSendError(f"SMTP server does not support: {exc}", provider=PROVIDER,
                                  response={**response, "error": str(exc)}, code="smtp_unsupported")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentSendError(f"SMTP TLS certificate not valid: {exc}", provider=PROVIDER,
                                  response={**response, "error": str(exc)}, code="tls_error")
    # smtplib reports a reply that never came as SMTPServerDisconnected("...: timed out").
    timed_out = isinstance(exc, TimeoutError) or "timed out" in str(exc)
    kind = "timeout" if timed_out else "connection_error"
    return TransientSendError(f"SMTP {kind.replace('_', ' ')}: {exc!r}", provider=PROVIDER,
                              response={**response, "error": repr(exc)}, code=kind)


class SmtpEmailAdapter:
    provider = PROVIDER

    def __init__(self, *, server: SmtpServer, from_email: str, reply_to: str = "") -> None:
        self.server = server
        self.from_email = from_email
        self.reply_to = reply_to

    @classmethod
    def from_account(cls, account) -> "SmtpEmailAdapter":
        config = account.settings
        use_ssl = bool(config.get("use_ssl"))
        server = SmtpServer(
            host=config["host"], port=int(config.get("port") or (465 if use_ssl else 587)),
            username=config.get("username", ""), password=account.secrets.get("password", ""),
            use_tls=bool(config.get("use_tls")), use_ssl=use_ssl, timeout=float(config.get("timeout", DEFAULT_TIMEOUT)),
        )
        return cls(server=server, from_email=sender_for_store(config["from_email"], account.store_name),
                   reply_to=config.get("reply_to", ""))

    def send(self, message: OutboundMessage) -> SendResult:
        email, data = email_render(message, from_email=self.from_email, reply_to=self.reply_to)
        message_id = email.extra_headers["Message-ID"]
        encoding = email.encoding or settings.DEFAULT_CHARSET
        envelope_from = sanitize_address(parseaddr(email.from_email)[1] or email.from_email, encoding)
        recipients = [sanitize_address(address, encoding) for address in email.recipients()]
        context = {"message_id": message_id, "server": f"{self.server.host}:{self.server.port}"}
        try:
            connection = _connection(self.server)
        except (smtplib.SMTPException, OSError) as exc:
            raise smtp_error(exc, response=context) from None
        try:
            connection.sendmail(envelope_from, recipients, data)
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            # smtplib has reset the transaction: the connection is still good for the next message.
            _pool.connections[self.server] = (connection, time.monotonic())
            raise smtp_error(exc, response=context) from None
        except (smtplib.SMTPException, OSError) as exc:
            _close(connection)
            raise smtp_error(exc, response=context) from None
        _pool.connections[self.server] = (connection, time.monotonic())
        return SendResult(provider=PROVIDER, provider_message_id=message_id, provider_status="accepted",
                          response={**context, "recipients": recipients})

    def check(self) -> dict[str, Any]:
        """Connect, authenticate and say NOOP; raises the same errors as send."""
        try:
            connection = self.server.connect()
            code, _ = connection.noop()
            _close(connection)
        except (smtplib.SMTPException, OSError) as exc:
            raise smtp_error(exc) from None
        return {"provider": PROVIDER, "server": f"{self.server.host}:{self.server.port}", "noop": code}


class DjangoMailAdapter:
    """EMAIL_URL naming a non-SMTP Django backend (console://, file://, memory://): hand the message to it."""

    provider = "django_mail"

    def __init__(self, *, backend: str, from_email: str, options: dict[str, Any] | None = None) -> None:
        self.backend = backend
        self.from_email = from_email
        self.options = options or {}

    def send(self, message: OutboundMessage) -> SendResult:
        email, _ = email_render(message, from_email=self.from_email)
        try:
            sent = get_connection(self.backend, fail_silently=False, **self.options).send_messages([email])
        except OSError as exc:
            raise TransientSendError(f"Mail backend failed: {exc!r}", provider=self.provider,
                                     response={"error": repr(exc)}, code="connection_error") from None
        if not sent:
            raise PermanentSendError("The mail backend refused the message.", provider=self.provider)
        return SendResult(provider=self.provider, provider_message_id=email.extra_headers["Message-ID"],
                          provider_status="accepted", response={"backend": self.backend})


def email_url_parse(url: str) -> dict[str, Any]:
    """EMAIL_URL as dj-email-url reads it, plus the smtp+tls:// and smtp+ssl:// spellings."""
    import dj_email_url

    scheme, sep, rest = url.partition("://")
    extra: dict[str, Any] = {}
    if sep and scheme in {"smtp+tls", "smtp+ssl"}:
        extra = {"EMAIL_USE_TLS": scheme == "smtp+tls", "EMAIL_USE_SSL": scheme == "smtp+ssl"}
        url = "smtp://" + rest
    parsed = dj_email_url.parse(url)
    parsed.update({key: value for key, value in extra.items() if value})
    if extra.get("EMAIL_USE_SSL"):
        parsed["EMAIL_USE_TLS"] = False
        if parsed.get("EMAIL_PORT") == 25 and ":25" not in rest.split("/")[0]:
            parsed["EMAIL_PORT"] = 465
    if extra.get("EMAIL_USE_TLS") and parsed.get("EMAIL_PORT") == 25 and ":25" not in rest.split("/")[0]:
        parsed["EMAIL_PORT"] = 587
    return parsed


def email_adapter_from_settings(*, store_id: int):
    """The site's mail (EMAIL_URL) for a store without its own SMTP account; the outbox when it is unset."""
    from tertulia.core.models import Store

    store_name = Store.objects.filter(pk=store_id).values_list("name", flat=True).first() or ""
    from_email = sender_for_store(settings.DEFAULT_FROM_EMAIL, store_name)
    url = getattr(settings, "EMAIL_URL", None)
    if not url:
        from tertulia.channels.outbox import OutboxAdapter

        return OutboxAdapter(store_id=store_id, channel="email", from_email=from_email)
    parsed = email_url_parse(url)
    backend = parsed.get("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
    if backend != "django.core.mail.backends.smtp.EmailBackend":
        import_string(backend)  # fail now, not on the first message
        options = {"file_path": parsed["EMAIL_FILE_PATH"]} if parsed.get("EMAIL_FILE_PATH") else {}
        return DjangoMailAdapter(backend=backend, from_email=from_email, options=options)
    server = SmtpServer(
        host=parsed.get("EMAIL_HOST") or "localhost", port=int(parsed.get("EMAIL_PORT") or 25),
        username=parsed.get("EMAIL_HOST_USER") or "", password=parsed.get("EMAIL_HOST_PASSWORD") or "",
        use_tls=bool(parsed.get("EMAIL_USE_TLS")), use_ssl=bool(parsed.get("EMAIL_USE_SSL")),
        timeout=float(parsed.get("EMAIL_TIMEOUT") or getattr(settings, "EMAIL_TIMEOUT", None) or DEFAULT_TIMEOUT),
    )
    return SmtpEmailAdapter(server=server, from_email=from_email)
