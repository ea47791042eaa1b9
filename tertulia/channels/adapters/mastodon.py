"""Mastodon as a channel (Mastodon.py): direct messages to a person, and public replies from the inbox.

A direct message is a status with visibility "direct" whose text starts with the recipient's handle; Mastodon
delivers a direct status only to the accounts it mentions. If the server could not resolve the handle the
status would reach nobody, so it is deleted again and the send fails permanently. A reply (MastodonReplyAdapter,
built by the listening source that heard the post) answers the status with `in_reply_to_id`, names the
person, and is never more public than what it answers. An Idempotency-Key per delivery makes a retry after a
timeout safe: the server answers the status it already created instead of posting a second one.
"""

import re
import threading
from typing import Any

from mastodon import (
    Mastodon,
    MastodonAPIError,
    MastodonError,
    MastodonIllegalArgumentError,
    MastodonNetworkError,
    MastodonRatelimitError,
    MastodonServerError,
)

from tertulia.channels.base import OutboundMessage, PermanentSendError, SendResult, TransientSendError

PROVIDER = "mastodon"
DEFAULT_TIMEOUT = 15.0
_HANDLE = re.compile(r"^@?(?P<user>[A-Za-z0-9_]+(?:[.-]+[A-Za-z0-9_]+)*)(?:@(?P<domain>[A-Za-z0-9.-]+\.[A-Za-z]{2,}|localhost(?::\d+)?))?$")


def handle_normalize(to: str) -> tuple[str, str, str]:
    """'@ana@example.social', 'ana@example.social' or '@ana' -> ('@ana@example.social', 'ana', 'example.social')."""
    match = _HANDLE.match(to.strip())
    if match is None:
        raise PermanentSendError(f"'{to}' is not a Mastodon handle (@user@instance).", provider=PROVIDER,
                                 code="invalid_recipient", response={"to": to})
    user, domain = match["user"], match["domain"] or ""
    return (f"@{user}@{domain}" if domain else f"@{user}"), user, domain


def _mentioned(status: dict[str, Any], user: str, domain: str) -> bool:
    for mention in status.get("mentions") or []:
        acct = str(mention.get("acct", "")).lower()
        if acct == (f"{user}@{domain}" if domain else user).lower():
            return True
        # The instance's own users appear without a domain, and the handle's domain (WebFinger) may differ
        # from the API host, so a domain-less mention of the same user name is the recipient.
        if "@" not in acct and acct == user.lower():
            return True
    return False


# Narrowest last: a reply never reaches more people than the status it answers.
VISIBILITIES = ("public", "unlisted", "private", "direct")


def reply_visibility(context: dict[str, Any], *, widest: str = "unlisted") -> str:
    """The visibility of a reply: the narrower of the answered status's and `widest`; direct stays direct.

    `widest` is "unlisted" by default: the reply sits in the thread (the person is notified, anyone reading
    the thread or the store's profile sees it) without filling the public and hashtag timelines with a
    shop's support answers. A followers-only status is answered followers-only, so nothing said in it
    becomes public; a visibility we do not know is answered directly, to the person alone.
    """
    if context.get("direct"):
        return "direct"
    original = context.get("visibility") or "public"
    if original not in VISIBILITIES:
        return "direct"
    widest = widest if widest in VISIBILITIES else "unlisted"
    return max(original, widest, key=VISIBILITIES.index)


def _names(text: str, handle: str) -> bool:
    """Whether `text` already names `handle` (the whole handle, as a word of its own)."""
    return re.search(rf"(?<![\w@]){re.escape(handle)}(?![\w@.-]*[\w@-])", text, re.IGNORECASE) is not None


class _MastodonAccount:
    """One account's client (one per thread) and what every Mastodon adapter does with it."""

    provider = PROVIDER

    def __init__(self, *, api_base_url: str, access_token: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.api_base_url = api_base_url.rstrip("/")
        self._access_token = access_token
        self.timeout = timeout
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.api_base_url})"

    def _client(self) -> Mastodon:
        client = getattr(self._local, "client", None)
        if client is None:
            # "throw": a rate limit becomes an error we retry later, never a sleep inside the dispatcher.
            client = Mastodon(access_token=self._access_token, api_base_url=self.api_base_url,
                              ratelimit_method="throw", request_timeout=self.timeout, version_check_mode="none",
                              user_agent="Tertulia")
            self._local.client = client
        return client

    def _post(self, message: OutboundMessage, *, text: str, visibility: str, user: str, domain: str,
              handle: str) -> SendResult:
        language = message.language[:2] if len(message.language) >= 2 else None
        client = self._client()
        try:
            status = client.status_post(text, visibility=visibility, language=language,
                                        in_reply_to_id=message.in_reply_to or None,
                                        idempotency_key=f"tertulia-{message.store_id}-{message.delivery_id}")
        except MastodonError as exc:
            raise mastodon_error(exc, client) from None
        status = dict(status)
        answer = {key: _plain(status.get(key)) for key in ("id", "uri", "url", "visibility", "created_at",
                                                             "in_reply_to_id")}
        answer["mentions"] = [str(m.get("acct")) for m in status.get("mentions") or []]
        if visibility == "direct" and not _mentioned(status, user, domain):
            try:
                client.status_delete(status["id"])
                answer["deleted"] = True
            except MastodonError as exc:
                answer["delete_error"] = str(exc)
            raise PermanentSendError(f"Mastodon did not resolve {handle}: a direct status would reach nobody.",
                                     provider=PROVIDER, response=answer, code="recipient_unknown")
        return SendResult(provider=PROVIDER, provider_message_id=str(status["id"]), provider_status="posted",
                          response=answer)

    def check(self) -> dict[str, Any]:
        client = self._client()
        try:
            account = client.account_verify_credentials()
        except MastodonError as exc:
            raise mastodon_error(exc, client) from None
        return {"provider": PROVIDER, "api_base_url": self.api_base_url, "acct": account.get("acct"),
                "id": str(account.get("id"))}


class MastodonDmAdapter(_MastodonAccount):
    """Direct messages (channel social_dm) from the store's Mastodon account."""

    @classmethod
    def from_account(cls, account) -> "MastodonDmAdapter":
        return cls(api_base_url=account.settings["api_base_url"], access_token=account.secrets["access_token"],
                   timeout=float(account.settings.get("timeout", DEFAULT_TIMEOUT)))

    def send(self, message: OutboundMessage) -> SendResult:
        handle, user, domain = handle_normalize(message.to)
        return self._post(message, text=f"{handle} {message.text}".strip(), visibility="direct", user=user,
                          domain=domain, handle=handle)


class MastodonReplyAdapter(_MastodonAccount):
    """Inbox replies (channel mastodon) from the account of the listening source that heard the status.

    The reply answers `message.in_reply_to` (the status id on the account's own server, as the connector
    stored it), starts with the person's handle unless the text names them already (Mastodon notifies
    only the accounts a status mentions), and takes `reply_visibility(message.reply_context)`. The handle
    is the `acct` the server wrote (reply_context, from the Mention's reply_ref), else the delivery's address.
    """

    def __init__(self, *, api_base_url: str, access_token: str, timeout: float = DEFAULT_TIMEOUT,
                 widest_visibility: str = "unlisted") -> None:
        super().__init__(api_base_url=api_base_url, access_token=access_token, timeout=timeout)
        self.widest_visibility = widest_visibility

    def send(self, message: OutboundMessage) -> SendResult:
        context = message.reply_context or {}
        handle, user, domain = handle_normalize(str(context.get("acct") or message.to))
        text = message.text.strip()
        if not _names(text, handle):
            text = f"{handle} {text}"
        visibility = reply_visibility(context, widest=self.widest_visibility)
        return self._post(message, text=text, visibility=visibility, user=user, domain=domain, handle=handle)


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def mastodon_error(exc: MastodonError, client: Mastodon | None = None) -> Exception:
    """Mastodon.py's exceptions as the port's: rate limits, network and 5xx transient; the rest permanent."""
    if isinstance(exc, MastodonRatelimitError):
        reset = getattr(client, "ratelimit_reset", None)
        return TransientSendError(f"Mastodon rate limit: {exc}", provider=PROVIDER, code="rate_limited",
                                  response={"error": str(exc), "ratelimit_reset": reset})
    if isinstance(exc, MastodonNetworkError):
        return TransientSendError(f"Mastodon network error: {exc}", provider=PROVIDER, code="connection_error",
                                  response={"error": str(exc)})
    if isinstance(exc, MastodonAPIError):
        status, reason, detail = api_error_details(exc)
        response = {"http_status": status, "reason": reason, "error": detail}
        text = f"Mastodon {status or ''} {reason or ''}: {response['error']}".replace("  ", " ")
        if isinstance(exc, MastodonServerError) or (isinstance(status, int) and (status >= 500 or status == 408)):
            return TransientSendError(text, provider=PROVIDER, response=response, code="provider_unavailable")
        code = "auth_failed" if status in (401, 403) else "provider_rejected"
        return PermanentSendError(text, provider=PROVIDER, response=response, code=code)
    if isinstance(exc, MastodonIllegalArgumentError):
        return PermanentSendError(f"Mastodon refused the request: {exc}", provider=PROVIDER,
                                  response={"error": str(exc)}, code="invalid_message")
    return PermanentSendError(f"Mastodon error: {exc}", provider=PROVIDER, response={"error": str(exc)})


def api_error_details(exc: MastodonAPIError) -> tuple[int | None, str | None, str]:
    """(HTTP status, reason, Mastodon's error message) of a Mastodon.py API error."""
    args = list(exc.args) + [None] * 4
    status, reason, detail = args[1], args[2], args[3]
    return (status if isinstance(status, int) else None, reason if isinstance(reason, str) else None,
            str(detail) if detail is not None else str(exc))
