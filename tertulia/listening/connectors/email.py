"""The e-mail connector: mail to the store's support address becomes inbox conversations (IMAP polling or a webhook).

One source is one support mailbox, in one of two modes (setting `mode`):

- "imap" (default): polls the mailbox with the standard library's imaplib. The mailbox is opened with
  EXAMINE (read-only) and messages are read with BODY.PEEK[], so the connector never changes a flag:
  people reading the same mailbox in their mail client see it as they left it, and we never rely on
  \\Seen. The cursor is the mailbox's UIDVALIDITY and the last UID handed over, written with the posts
  after each batch, so a restart resumes with no gap and no duplicate. A changed UIDVALIDITY (the mailbox
  was rebuilt, UIDs renumbered) starts again from the newest `backfill` messages; Mention's unique key on
  the Message-ID keeps what was stored before from being stored twice.
- "webhook": the mail provider (or a forwarding rule, Cloudflare Email Workers, Mailgun's raw MIME route...)
  POSTs each message to /webhooks/email/<store>/<source key>, as raw RFC 822 (Content-Type
  message/rfc822) or as JSON (`webhook_message`); authenticated like every pushed source
  (listening.pushed). SPEC is one per module and cannot say "pushed" for one mode only, so the runner
  does run webhook-mode sources: their session returns at once and asks to be run again in a day.

Both modes read a message the same way (`message_read`): Message-ID (external_id; a digest of the raw
message when it has none), In-Reply-To, the first id of References (thread_root), From (author), Subject
(title), the text/plain part or the HTML one as text, Date. Auto-replies, bounces, bulk mail and mail
from the store's own address are skipped (answering them makes mail loops). A message that cannot be read
is kept as malformed, and the next one is read.

Replies go out through the store's e-mail channel (channels: its SMTP account, else the site's EMAIL_URL),
From and Reply-To the source's `address` (carried to the adapter as reply_ref["reply_from"]), with
In-Reply-To and References as RFC 5322 section 3.6.4 says.
"""

import hashlib
import imaplib
import logging
import re
import ssl
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from datetime import timezone as timezone_of
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parseaddr, parsedate_to_datetime
from typing import Any

import orjson
from django.utils import timezone

from tertulia.core.errors import ErrorDetail
from tertulia.listening.connectors.base import (
    PUSHED_WAIT_SECONDS,
    AuthFailed,
    ConnectorError,
    Post,
    SourceSpec,
    html_to_text,
)

log = logging.getLogger("tertulia.listening")

MODES = ("imap", "webhook")
# IMAP servers document no request budget (one session is a handful of commands); the poll interval is ours.
SPEC = SourceSpec(
    settings={"mode": str, "host": str, "port": int, "ssl": bool, "starttls": bool, "username": str,
              "mailbox": str, "address": str, "poll_seconds": (int, float), "timeout": (int, float), "backfill": int},
    required_settings=frozenset({"address"}),
    secrets=frozenset({"password", "token"}),  # password: IMAP; token: webhook (tertulia listening source token)
    poll_seconds=60.0,
    min_poll_seconds=10.0,
)
DEFAULT_TIMEOUT = 30.0
DEFAULT_BACKFILL = 50  # a new source (or a renumbered mailbox) starts with the newest 50 messages
FETCH_BATCH = 25
MAX_PER_SESSION = 500  # more waiting: the next session starts at once
MAX_MESSAGE_BYTES = 10 * 1024 * 1024  # larger: only its headers are read (text says so)
MAX_TEXT = 20_000
MAX_ID = 398
GENERATED_DOMAIN = "generated.tertulia.invalid"
_ID = re.compile(r"<([\x21-\x3b\x3d\x3f-\x7e]{1,400})>")  # printable ASCII but < and >, as RFC 5322 msg-ids
_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_INTERNALDATE = re.compile(rb'\bINTERNALDATE "([^"]+)"')
_MAILBOX_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}


# --- reading a message (both modes) -------------------------------------------------------------


class Skipped(Exception):  # noqa: N818 - not an error: a message we must not answer
    """A message that is not a person writing to the store: an auto-reply, a bounce, bulk mail, our own."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MessageError(Exception):
    """A message (or webhook body) that cannot be read; kept as malformed."""

    def __init__(self, code: str, message: str, details: list[ErrorDetail] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or []


def message_ids(value: Any) -> list[str]:
    """The msg-ids of a Message-ID, In-Reply-To or References header, as "<left@right>", in order, once each."""
    text = re.sub(r"\s+", " ", str(value or ""))
    ids = [f"<{found}>" for found in _ID.findall(text)]
    bare = text.strip()
    if not ids and "@" in bare and re.fullmatch(r"[\x21-\x3b\x3d\x3f-\x7e]{1,400}", bare):
        ids = [f"<{bare}>"]  # some senders forget the angle brackets
    return [value for value in dict.fromkeys(ids) if len(value) <= MAX_ID]


def _raw_header(message: EmailMessage, name: str) -> str:
    # The raw value, unfolded: id headers are plain ASCII, and the raw form never trips the header parser.
    for key, value in message.raw_items():
        if key.lower() == name.lower():
            return re.sub(r"\r?\n[ \t]", " ", str(value))
    return ""


def _address(message: EmailMessage, name: str) -> tuple[str, str]:
    try:
        header = message[name]
        addresses = getattr(header, "addresses", None)
        if addresses:
            first = addresses[0]
            if first.addr_spec and "@" in first.addr_spec:
                return str(first.display_name or ""), first.addr_spec.strip().lower()
    except (IndexError, ValueError, TypeError, AttributeError):  # the structured parse failed: try the raw value
        pass
    name_, address = parseaddr(_raw_header(message, name))
    return name_, address.strip().lower() if "@" in address else ""


def skip_reason(message: EmailMessage, *, sender: str, own_address: str) -> str:
    """Why this message is not for the inbox (RFC 3834 auto-responses, delivery reports, bulk), or ""."""
    auto = _raw_header(message, "Auto-Submitted").strip().lower()
    if auto and not auto.startswith("no"):
        return "auto_submitted"
    if _raw_header(message, "Precedence").strip().lower() in ("bulk", "junk", "auto_reply"):
        return "bulk"
    if _raw_header(message, "X-Autoreply") or _raw_header(message, "X-Autorespond"):
        return "auto_submitted"
    local = sender.partition("@")[0]
    if local in ("mailer-daemon", "postmaster") or message.get_content_type() == "multipart/report":
        return "bounce"
    if _raw_header(message, "Return-Path").strip() == "<>":
        return "bounce"  # the null sender: a delivery status notification
    if own_address and sender == own_address.lower():
        return "own_address"  # our own replies (a copy in the mailbox, a Cc): answering them loops
    return ""


def _html_as_text(html: str) -> str:
    html = re.sub(r"(?is)<(head|style|script)\b.*?</\1\s*>", "", html)
    html = re.sub(r"(?i)</(div|tr|li|h[1-6])\s*>", "\n", html)
    return re.sub(r"\n{3,}", "\n\n", html_to_text(html))


def without_quoted_tail(text: str) -> str:
    """The message without the quoted earlier message at its end ("> ..." lines and their "... wrote:" line).

    Only a trailing quote is cut (the usual top-posted reply); quotes between the person's own lines stay.
    """
    lines = text.rstrip().splitlines()
    end = len(lines)
    while end and (lines[end - 1].startswith(">") or not lines[end - 1].strip()):
        end -= 1
    if end == len(lines):
        return text.strip()
    if end and lines[end - 1].rstrip().endswith(":"):
        end -= 1  # "On Tue, 3 Dec 2026, Ana wrote:", "El mar, 3 dic 2026, Ana escribió:"
    kept = "\n".join(lines[:end]).strip()
    return kept or text.strip()


def _content(part: EmailMessage) -> str:
    try:
        return str(part.get_content())
    except (LookupError, ValueError, AssertionError):  # an unknown charset, a broken transfer encoding
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else str(payload)


def message_text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain", "html"))
    text = ""
    if body is not None:
        text = _content(body)
        if body.get_content_type() == "text/html":
            text = _html_as_text(text)
    text = without_quoted_tail(text.replace("\r\n", "\n"))
    names = [part.get_filename() for part in message.iter_attachments()] if message.is_multipart() else []
    attached = "\n".join(f"[attachment: {name}]" for name in names if name)
    return (f"{text}\n\n{attached}" if text and attached else text or attached)[:MAX_TEXT]


def _date(message: EmailMessage) -> datetime | None:
    raw = _raw_header(message, "Date").strip()
    if not raw:
        return None
    try:
        moment = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment  # "-0000": UTC, zone unknown


def _clean(value: str) -> str:
    # A NUL in an 8-bit body or a header is possible in mail, and impossible in PostgreSQL text.
    return value.replace("\x00", "")


def message_read(raw: bytes, *, own_address: str, received_at: datetime | None = None,
                 now: datetime | None = None) -> Post:
    """One RFC 822 message as a Post (kind "direct"); Skipped for what must not be answered, MessageError
    for what cannot be read."""
    moment = now or timezone.now()
    if not raw or not raw.strip():
        raise MessageError("empty", "The message is empty.")
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
        name, sender = _address(message, "From")
        if not sender:
            raise MessageError("no_sender", "The message has no From address.")
        reason = skip_reason(message, sender=sender, own_address=own_address)
        if reason:
            raise Skipped(reason)
        ids = message_ids(_raw_header(message, "Message-ID"))
        external_id = ids[0] if ids else f"<{hashlib.sha256(raw).hexdigest()[:32]}@{GENERATED_DOMAIN}>"
        parents = message_ids(_raw_header(message, "In-Reply-To"))
        references = message_ids(_raw_header(message, "References"))
        in_reply_to = parents[0] if parents else ""
        try:
            subject = re.sub(r"\s+", " ", str(message.get("Subject") or "")).strip()
        except (ValueError, TypeError, IndexError):
            subject = _raw_header(message, "Subject").strip()
        posted_at = _date(message) or received_at or moment
        if posted_at > moment + timedelta(minutes=5):
            posted_at = received_at if received_at and received_at <= moment else moment  # a sender's clock ahead
        language = _raw_header(message, "Content-Language").split(",")[0].strip()[:16]
        text = message_text(message)
    except (MessageError, Skipped):
        raise
    except Exception as exc:  # noqa: BLE001 - the email package's surprises are a malformed message, not a crash
        raise MessageError("unreadable_message", f"The message cannot be read: {type(exc).__name__}: {exc}") from None
    # RFC 5322 3.6.4: a reply's References are the parent's References (or its In-Reply-To) plus the parent.
    thread = references or parents[:1]
    sender, name, subject, text, language = (_clean(v) for v in (sender, name, subject, text, language))
    return Post(
        network="email", external_id=external_id, text=text, posted_at=posted_at, kind="direct",
        author_id=sender, author_handle=sender, author_name=name[:200], title=subject[:300], language=language,
        in_reply_to=in_reply_to, thread_root=references[0] if references else in_reply_to,
        reply_ref={"references": thread[-20:], "subject": subject[:300], "reply_from": own_address},
    )


# --- the webhook's JSON shape --------------------------------------------------------------------

JSON_FIELDS = ("from", "to", "subject", "text", "html", "message_id", "in_reply_to", "references", "date", "headers")


def _json_date(value: str) -> str:
    """An RFC 5322 date as given, or an ISO 8601 one turned into RFC 5322; ValueError otherwise."""
    from email.utils import format_datetime

    try:
        parsedate_to_datetime(value)
        return value
    except (TypeError, ValueError, IndexError):
        pass
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("no time zone")
    return format_datetime(moment)


def webhook_message(body: bytes) -> bytes:
    """The JSON form of an inbound message as RFC 822 bytes, read by `message_read` like any other:

        {"from": "Ana <ana@example.com>", "to": "soporte@tienda.example", "subject": "Mi pedido",
         "text": "Hola...", "html": "<p>Hola...</p>", "message_id": "<abc@mail.example>",
         "in_reply_to": "<...>", "references": ["<...>", "<...>"], "date": "2026-12-01T10:00:00Z",
         "headers": {"Auto-Submitted": "auto-replied"}}

    Only `from` and one of `text`/`html` are required; `date` is RFC 5322 or ISO 8601 with a zone;
    `references` is a list or one space-separated string; `headers` are extra headers (what the provider
    saw: Auto-Submitted, Precedence...). MessageError lists every problem at once.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MessageError("invalid_json", f"The body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MessageError("unexpected_shape", "Send one message as a JSON object.")
    problems: list[ErrorDetail] = []

    def text(name: str, *, required: bool = False, limit: int = 1000) -> str:
        value = data.get(name)
        if value in (None, ""):
            if required:
                problems.append(ErrorDetail(field=name, code="required", message="Required."))
            return ""
        if isinstance(value, list) and name in ("to", "references") and all(isinstance(v, str) for v in value):
            value = (", " if name == "to" else " ").join(value)
        if not isinstance(value, str):
            problems.append(ErrorDetail(field=name, code="invalid_type", message="Must be a string."))
            return ""
        if len(value) > limit:
            problems.append(ErrorDetail(field=name, code="too_long", message=f"At most {limit} characters."))
            return ""
        return value

    unknown = sorted(set(data) - set(JSON_FIELDS))
    for name in unknown:
        problems.append(ErrorDetail(field=name, code="unknown_field", message=f"Fields: {', '.join(JSON_FIELDS)}."))
    sender = text("from", required=True)
    if sender and "@" not in parseaddr(sender)[1]:
        problems.append(ErrorDetail(field="from", code="invalid", message="An e-mail address."))
    plain, html = text("text", limit=1_000_000), text("html", limit=2_000_000)
    if not plain and not html and not any(p.field in ("text", "html") for p in problems):
        problems.append(ErrorDetail(field="text", code="required", message="Send text or html."))
    fields = {name: text(name, limit=10_000 if name == "references" else 1000)
              for name in ("to", "subject", "message_id", "in_reply_to", "references", "date")}
    if fields["date"]:
        try:
            fields["date"] = _json_date(fields["date"])
        except ValueError:
            problems.append(ErrorDetail(field="date", code="invalid_datetime",
                                        message="An RFC 5322 date, or ISO 8601 with a time zone."))
            fields["date"] = ""
    extra = data.get("headers") or {}
    if not isinstance(extra, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        problems.append(ErrorDetail(field="headers", code="invalid_type", message="An object of strings."))
        extra = {}
    if problems:
        raise MessageError("invalid_message", "The message is not valid; nothing was stored.", problems)
    message = EmailMessage(policy=policy.default)
    try:
        for name, value in extra.items():
            # How the provider encoded the mail is not how we rebuild it: its MIME headers do not apply.
            if not name.lower().startswith("content-") and name.lower() != "mime-version":
                message[name] = value
        for header, name in (("From", None), ("To", "to"), ("Subject", "subject"), ("Date", "date"),
                             ("Message-ID", "message_id"), ("In-Reply-To", "in_reply_to"),
                             ("References", "references")):
            value = sender if name is None else fields[name]
            if value:
                del message[header]
                message[header] = value
        if plain:
            message.set_content(plain)
        if html:
            if plain:
                message.add_alternative(html, subtype="html")
            else:
                message.set_content(html, subtype="html")
        return message.as_bytes()
    except (ValueError, TypeError, IndexError) as exc:  # a header with a line break, an address that is not one
        raise MessageError("invalid_message", f"The message cannot be built: {exc}") from None


def webhook_post(body: bytes, *, content_type: str, own_address: str, now: datetime | None = None) -> Post:
    """What one webhook delivery says: raw RFC 822, or the JSON shape of `webhook_message`."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == "message/rfc822":
        raw = body
    elif kind == "application/json":
        raw = webhook_message(body)
    else:
        raise MessageError("unsupported_media_type",
                           "Send Content-Type message/rfc822 (the raw message) or application/json.")
    return message_read(raw, own_address=own_address, now=now)


# --- settings ------------------------------------------------------------------------------------


def validate(settings: dict[str, Any], secrets: dict[str, Any]) -> list[ErrorDetail]:
    problems = []
    mode = settings.get("mode", "imap")
    if mode not in MODES:
        problems.append(ErrorDetail(field="settings.mode", code="invalid", message="imap or webhook."))
    address = parseaddr(settings.get("address") or "")[1]
    if "@" not in address or address != (settings.get("address") or "").strip():
        problems.append(ErrorDetail(field="settings.address", code="invalid",
                                    message="The support address itself, e.g. soporte@tienda.example."))
    if mode == "imap":
        for name in ("host", "username"):
            if not settings.get(name):
                problems.append(ErrorDetail(field=f"settings.{name}", code="required", message="Required for imap."))
        port = settings.get("port")
        if port is not None and not 1 <= port <= 65535:
            problems.append(ErrorDetail(field="settings.port", code="invalid", message="A TCP port."))
        if settings.get("ssl", True) and settings.get("starttls"):
            problems.append(ErrorDetail(field="settings.starttls", code="invalid",
                                        message="STARTTLS is for a plain connection; set ssl to false to use it."))
        mailbox = settings.get("mailbox")
        if mailbox is not None and (not mailbox or _MAILBOX_UNSAFE.search(mailbox) or not mailbox.isascii()):
            problems.append(ErrorDetail(field="settings.mailbox", code="invalid",
                                        message="A mailbox name in ASCII, e.g. INBOX."))
    timeout = settings.get("timeout")
    if timeout is not None and not 1 <= timeout <= 300:
        problems.append(ErrorDetail(field="settings.timeout", code="invalid", message="Between 1 and 300 seconds."))
    backfill = settings.get("backfill")
    if backfill is not None and not 0 <= backfill <= 1000:
        problems.append(ErrorDetail(field="settings.backfill", code="invalid", message="Between 0 and 1000."))
    return problems


def build(config) -> "MailConnector":
    return MailConnector(config)


# --- IMAP ----------------------------------------------------------------------------------------


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _size(meta: bytes) -> int:
    found = _SIZE.search(meta)
    return int(found.group(1)) if found else 0


def _internaldate(meta: bytes) -> datetime | None:
    found = _INTERNALDATE.search(meta)
    if not found:
        return None
    # "17-Jul-1996 02:44:25 -0700" (RFC 3501 date-time); month names are English whatever the locale.
    parts = re.fullmatch(rb"\s?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)",
                         found.group(1))
    month = MONTHS.get(parts.group(2).decode().title()) if parts else None
    if not month:
        return None
    day, year, hour, minute, second = (int(parts.group(n)) for n in (1, 3, 4, 5, 6))
    offset = timedelta(hours=int(parts.group(8)), minutes=int(parts.group(9))) * (-1 if parts.group(7) == b"-" else 1)
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=timezone_of(offset))
    except ValueError:
        return None


def fetch_responses(data: Iterable[Any]) -> list[tuple[bytes, bytes | None]]:
    """imaplib's FETCH data as (attributes, literal) per message: a literal arrives as a tuple, and the rest
    of its line (more attributes, the closing parenthesis) as the next item."""
    responses: list[list[Any]] = []
    for item in data or []:
        if isinstance(item, tuple):
            responses.append([bytes(item[0]), bytes(item[1])])
        elif isinstance(item, bytes) and re.match(rb"^\d+ \(", item):
            responses.append([item, None])
        elif isinstance(item, bytes) and responses:
            responses[-1][0] += b" " + item
    return [(meta, literal) for meta, literal in responses]


class MailConnector:
    network = "email"

    def __init__(self, config) -> None:
        self.config = config
        settings = config.settings
        self.mode = settings.get("mode", "imap")
        self.host = str(settings.get("host") or "")
        self.ssl = bool(settings.get("ssl", True))
        self.starttls = bool(settings.get("starttls", False))
        self.port = int(settings.get("port") or (993 if self.ssl else 143))
        self.username = str(settings.get("username") or "")
        self.mailbox = str(settings.get("mailbox") or "INBOX")
        self.address = str(settings.get("address") or "").strip().lower()
        self.timeout = float(settings.get("timeout") or DEFAULT_TIMEOUT)
        self.backfill = int(settings.get("backfill", DEFAULT_BACKFILL))

    def run(self, session) -> None:
        if self.mode == "webhook":
            session.next_run_in(PUSHED_WAIT_SECONDS)  # mail arrives at the webhook; nothing to poll
            return
        password = str(session.secrets.get("password") or "")
        if not password:
            raise ConnectorError("The IMAP source has no password (secrets.password).", code="misconfigured",
                                 transient=False)
        session.throttle()
        connection = self._connect()
        try:
            self._login(connection, password)
            self._poll(session, connection)
        except (imaplib.IMAP4.abort, OSError) as exc:
            raise ConnectorError(f"The IMAP connection broke: {exc}", code="connection_error") from None
        except imaplib.IMAP4.error as exc:
            raise ConnectorError(f"The IMAP server refused a command: {exc}", code="imap_error") from None
        finally:
            try:
                connection.logout()
            except (imaplib.IMAP4.error, OSError):
                pass

    def _connect(self) -> imaplib.IMAP4:
        context = ssl.create_default_context()
        try:
            if self.ssl:
                connection: imaplib.IMAP4 = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=context,
                                                              timeout=self.timeout)
            else:
                connection = imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
            if self.starttls:
                connection.starttls(ssl_context=context)
        except ssl.SSLCertVerificationError as exc:
            raise ConnectorError(f"The IMAP server's certificate is not valid: {exc}", code="tls_error",
                                 transient=False) from None
        except TimeoutError as exc:
            raise ConnectorError(f"{self.host}:{self.port} did not answer in {self.timeout:g} s: {exc}",
                                 code="timeout") from None
        except (OSError, imaplib.IMAP4.error) as exc:  # refused, unreachable, no STARTTLS, a garbled greeting
            raise ConnectorError(f"Could not connect to {self.host}:{self.port}: {exc}", code="connection_error") from None
        return connection

    def _login(self, connection: imaplib.IMAP4, password: str) -> None:
        try:
            connection.login(self.username, password)
        except UnicodeEncodeError:
            raise ConnectorError("imaplib's LOGIN takes ASCII user names and passwords (use an app password).",
                                 code="misconfigured", transient=False) from None
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            raise AuthFailed(f"IMAP LOGIN failed for {self.username}: {exc}") from None

    def _poll(self, session, connection: imaplib.IMAP4) -> None:
        status, data = connection.select(_quoted(self.mailbox), readonly=True)  # EXAMINE: nothing changes
        if status != "OK":
            detail = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
            raise ConnectorError(f"Cannot open mailbox {self.mailbox!r}: {detail}", code="mailbox_not_found",
                                 transient=False)
        exists = int(data[0]) if data and data[0] and data[0].isdigit() else 0
        _, validity = connection.response("UIDVALIDITY")
        uidvalidity = int(validity[0]) if validity and validity[0] and validity[0].isdigit() else 0
        cursor = dict(session.cursor or {})
        same = bool(uidvalidity) and cursor.get("mailbox") == self.mailbox and cursor.get("uidvalidity") == uidvalidity
        last_uid = int(cursor.get("last_uid") or 0) if same else None
        if not same and cursor:
            log.warning("mailbox UIDVALIDITY changed: reading its newest messages again",
                        extra={"source_id": session.source_id, "mailbox": self.mailbox,
                               "was": cursor.get("uidvalidity"), "now": uidvalidity})
        uids = self._search(connection, last_uid) if exists else []
        if last_uid is None:  # a new source, or renumbered UIDs: the newest `backfill` messages, then onwards
            highest = max(uids, default=0)
            uids = uids[-self.backfill:] if self.backfill else []
            last_uid = (uids[0] - 1) if uids else highest
        cursor = {"mailbox": self.mailbox, "uidvalidity": uidvalidity, "last_uid": last_uid}
        todo = uids[:MAX_PER_SESSION]
        if not todo:
            session.emit([], cursor, newest_at=timezone.now())
            return
        for start in range(0, len(todo), FETCH_BATCH):
            if session.should_stop():
                break
            session.heartbeat()
            batch = todo[start:start + FETCH_BATCH]
            posts, newest = self._read_batch(session, connection, batch)
            cursor = {**cursor, "last_uid": batch[-1]}
            session.emit(posts, cursor, newest_at=newest)
        if len(uids) > len(todo) or cursor["last_uid"] < todo[-1]:
            session.next_run_in(0)  # more waiting in the mailbox: carry on in the next session at once

    def _search(self, connection: imaplib.IMAP4, last_uid: int | None) -> list[int]:
        if last_uid is None:
            status, data = connection.uid("SEARCH", "ALL")
        else:
            status, data = connection.uid("SEARCH", "UID", f"{last_uid + 1}:*")
        if status != "OK":
            raise ConnectorError(f"UID SEARCH failed: {data!r}", code="imap_error")
        uids = sorted({int(n) for line in data if line for n in line.split() if n.isdigit()})
        # "n:*" always includes the highest UID, even when it is below n (RFC 3501 6.4.8): drop what we have.
        return [uid for uid in uids if last_uid is None or uid > last_uid]

    def _fetch(self, connection: imaplib.IMAP4, uids: list[int], items: str) -> dict[int, tuple[bytes, bytes | None]]:
        status, data = connection.uid("FETCH", ",".join(str(uid) for uid in uids), items)
        if status != "OK":
            raise ConnectorError(f"UID FETCH failed: {data!r}", code="imap_error")
        found = {}
        for meta, literal in fetch_responses(data):
            uid = _UID.search(meta)
            if uid:  # an unsolicited FETCH (another client changed a flag) has no UID: not ours
                found[int(uid.group(1))] = (meta, literal)
        return found

    def _read_batch(self, session, connection: imaplib.IMAP4, batch: list[int]) -> tuple[list[Post], datetime]:
        sizes = {uid: _size(meta) for uid, (meta, _) in self._fetch(connection, batch, "(UID RFC822.SIZE)").items()}
        small = [uid for uid in batch if uid in sizes and sizes[uid] <= MAX_MESSAGE_BYTES]
        large = [uid for uid in batch if uid in sizes and sizes[uid] > MAX_MESSAGE_BYTES]
        bodies = self._fetch(connection, small, "(UID INTERNALDATE BODY.PEEK[])") if small else {}
        if large:
            bodies |= self._fetch(connection, large, "(UID INTERNALDATE BODY.PEEK[HEADER])")
        posts = []
        moment = timezone.now()
        newest = None
        for uid in batch:
            if uid not in bodies:
                continue  # expunged between SEARCH and FETCH
            meta, raw = bodies[uid]
            received = _internaldate(meta)
            if not raw:
                session.malformed(meta, error=f"UID {uid}: the server sent no message body.", code="unexpected_shape")
                continue
            try:
                post = message_read(raw, own_address=self.address, received_at=received, now=moment)
            except Skipped as skipped:
                log.info("mail skipped", extra={"source_id": session.source_id, "uid": uid, "reason": skipped.reason})
                continue
            except MessageError as error:
                session.malformed(raw, error=f"UID {uid}: {error.message}", code=error.code)
                continue
            if uid in large:
                post.text = f"{post.text}\n\n[message of {sizes[uid]} bytes: only its headers were read]".strip()
            arrived = received or post.posted_at  # the lag is the mailbox's: when it got the mail, not its Date
            newest = max(newest, arrived) if newest else arrived
            posts.append(post)
        return posts, newest or moment
