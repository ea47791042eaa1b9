"""The port every channel adapter implements, and the errors it may raise.

An adapter turns an OutboundMessage into one call to its provider (an SMTP conversation, a Twilio
Messages request, a Mastodon status) and says how it went. It never touches the database: the
dispatcher records the attempt, retries transient errors with backoff and stops on permanent ones.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(slots=True)
class OutboundMessage:
    delivery_id: int
    store_id: int
    channel: str  # email, sms, social_dm; mastodon, bluesky, x (public replies)
    to: str  # e-mail address, E.164 phone number, or social handle (@user@instance)
    text: str  # the plain-text body (SMS, DM, and the e-mail's text/plain part)
    subject: str = ""
    html: str = ""  # e-mail only
    language: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # e-mail only: List-Unsubscribe, List-Unsubscribe-Post...
    from_address: str = ""  # empty: the account's or the site's default sender
    status_callback_url: str = ""  # SMS: where the provider reports delivery
    in_reply_to: str = ""  # a provider id to answer (inbox replies)
    reply_context: dict[str, Any] = field(default_factory=dict)  # what else the provider needs to thread a reply
    sender: str = ""  # which account sends: "" = the store's account for the channel, "source:<id>" = a listening source
    created_at: datetime | None = None  # when the delivery was made: the same on every attempt (Bluesky's record key)


@dataclass(slots=True)
class SendResult:
    provider: str
    provider_message_id: str = ""
    provider_status: str = ""  # as the provider names it: queued, accepted, sent...
    response: dict[str, Any] = field(default_factory=dict)  # what came back, kept on the attempt


class SendError(Exception):
    def __init__(self, message: str, *, provider: str = "", response: dict[str, Any] | None = None,
                 code: str = "provider_error") -> None:
        super().__init__(message)
        self.provider = provider
        self.response = response or {}
        self.code = code


class TransientSendError(SendError):
    """Worth retrying: a timeout, a refused connection, a 429 or 5xx, an SMTP 4xx reply."""


class PermanentSendError(SendError):
    """Retrying cannot help: an invalid number, a rejected recipient, bad credentials, an SMTP 5xx reply."""


class ChannelAdapter(Protocol):
    provider: str

    def send(self, message: OutboundMessage) -> SendResult: ...
