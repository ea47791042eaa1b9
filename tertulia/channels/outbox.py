"""The built-in outbox: messages kept in the database instead of sent, exactly as they would have gone out.

Three ways in: `OutboxAdapter` (journey e-mail when EMAIL_URL is unset; SMS and DMs in sandbox mode),
`OutboxEmailBackend` (Django's own mail: password resets, admin errors...), and nothing else. The dashboard
reads it with `outbox_list` and shows each e-mail from its stored MIME with `outbox_render`.
"""

import email
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage as ParsedEmail
from typing import Any

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.db.models import QuerySet

from tertulia.channels.adapters.email import email_render
from tertulia.channels.base import OutboundMessage, SendResult
from tertulia.channels.models import OutboxMessage
from tertulia.core.models import Store

PROVIDER = "outbox"


def _headers(parsed: ParsedEmail) -> dict[str, str]:
    return {name: str(value) for name, value in parsed.items()
            if name.lower() not in {"content-type", "content-transfer-encoding", "mime-version"}}


def _parts(parsed: ParsedEmail) -> tuple[str, str]:
    text_part = parsed.get_body(preferencelist=("plain",))
    html_part = parsed.get_body(preferencelist=("html",))
    return (text_part.get_content() if text_part is not None else "",
            html_part.get_content() if html_part is not None else "")


def outbox_email_store(*, raw: bytes, store_id: int | None, delivery_id: int | None) -> OutboxMessage:
    """Keep one e-mail given as its MIME bytes; the parts shown in lists are read back from those bytes."""
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    text, html = _parts(parsed)
    recipients = [str(address) for header in ("To", "Cc", "Bcc") for address in parsed.get_all(header, [])]
    return OutboxMessage.objects.create(
        store_id=store_id, delivery_id=delivery_id, channel="email", from_email=str(parsed.get("From", ""))[:320],
        to=recipients, subject=str(parsed.get("Subject", ""))[:998], body_text=text, body_html=html,
        headers=_headers(parsed), raw=raw.decode("utf-8", "replace"),
        provider_message_id=str(parsed.get("Message-ID", ""))[:200],
    )


class OutboxAdapter:
    """Sends nothing: keeps the message in the outbox and answers as a provider that accepted it."""

    provider = PROVIDER

    def __init__(self, *, store_id: int, channel: str, from_email: str = "", sender: str = "") -> None:
        self.store_id = store_id
        self.channel = channel
        self.from_email = from_email or settings.DEFAULT_FROM_EMAIL
        self.sender = sender

    def send(self, message: OutboundMessage) -> SendResult:
        if self.channel == "email":
            _, raw = email_render(message, from_email=self.from_email)
            # delivery_id 0: a message that is no Delivery (`tertulia channel test --to`).
            kept = outbox_email_store(raw=raw, store_id=message.store_id, delivery_id=message.delivery_id or None)
            return SendResult(provider=PROVIDER, provider_message_id=kept.provider_message_id,
                              provider_status="stored", response={"outbox_id": kept.pk})
        # SMS and DMs: the text the person would read, addressed as the provider would address it.
        shown = f"{_handle(message.to)} {message.text}" if self.channel == "social_dm" else message.text
        kept = OutboxMessage.objects.create(
            store_id=message.store_id, delivery_id=message.delivery_id or None, channel=self.channel,
            from_email=self.sender or f"sandbox:{self.channel}", to=[message.to], subject=message.subject[:998],
            body_text=shown, headers={}, raw=shown,
        )
        OutboxMessage.objects.filter(pk=kept.pk).update(provider_message_id=f"outbox-{kept.pk}")
        return SendResult(provider=PROVIDER, provider_message_id=f"outbox-{kept.pk}", provider_status="stored",
                          response={"outbox_id": kept.pk})


def _handle(to: str) -> str:
    return to if to.startswith("@") else f"@{to}"


class OutboxEmailBackend(BaseEmailBackend):
    """Django's EMAIL_BACKEND when EMAIL_URL is unset: the site's own mail goes to the outbox (no store)."""

    def send_messages(self, email_messages) -> int:
        count = 0
        for message in email_messages:
            if not message.recipients():
                continue
            try:
                outbox_email_store(raw=message.message().as_bytes(linesep="\r\n"), store_id=None, delivery_id=None)
            except Exception:
                if not self.fail_silently:
                    raise
                continue
            count += 1
        return count


# --- reads -------------------------------------------------------------------------------------


def outbox_list(*, store: Store | int, channel: str | None = None) -> QuerySet[OutboxMessage]:
    """A store's kept messages, newest first (the site's own mail, with no store, is not listed)."""
    rows = OutboxMessage.objects.filter(store_id=store if isinstance(store, int) else store.pk)
    return rows.filter(channel=channel) if channel else rows


@dataclass(slots=True)
class RenderedOutboxMessage:
    channel: str
    subject: str
    from_email: str
    to: list[str]
    date: str
    text: str
    html: str
    headers: dict[str, str] = field(default_factory=dict)


def outbox_render(message: OutboxMessage) -> RenderedOutboxMessage:
    """What the person would see, read back from the stored raw message (not from our copy of the parts)."""
    if message.channel != "email":
        return RenderedOutboxMessage(channel=message.channel, subject=message.subject, from_email=message.from_email,
                                     to=list(message.to), date=message.created_at.isoformat(), text=message.raw, html="")
    parsed = email.message_from_bytes(message.raw.encode("utf-8"), policy=email.policy.default)
    text, html = _parts(parsed)
    headers: dict[str, Any] = _headers(parsed)
    return RenderedOutboxMessage(channel="email", subject=str(parsed.get("Subject", "")),
                                 from_email=str(parsed.get("From", "")), to=[str(a) for a in parsed.get_all("To", [])],
                                 date=str(parsed.get("Date", "")), text=text, html=html, headers=headers)
