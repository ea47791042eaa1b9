"""Public replies on Bluesky: an app.bsky.feed.post record answering a post, created through the atproto SDK.

The reply names the post it answers (`reply.parent`, its at:// URI and CID) and the first post of its thread
(`reply.root`: the parent's own root, or the parent itself), which the listening connector keeps in the
mention's `reply_ref`. The new post's at:// URI is the provider message id, the same form the connector
uses for `Post.external_id`, so an answer to our reply threads back into the conversation.

Bluesky has no idempotency key. A retry after a timeout could post the reply twice, so each delivery gets
its own record key: a TID (the record key type app.bsky.feed.post requires) built from the delivery's
creation time and id, the same on every attempt. A retry then asks for a record that exists already: the
PDS refuses it (today with a 500, see bluesky-social/atproto#3718), and the adapter looks the record up
and reports the reply as sent instead of posting it again.

Logging in (com.atproto.server.createSession) is limited to 30 per 5 minutes and 300 a day per account,
so logged-in clients are kept per process (`bluesky_client`) and shared with the listening connector;
the SDK refreshes the access token on its own before it expires.
"""

import hashlib
import re
import threading
import unicodedata
from datetime import UTC, datetime
from typing import Any

from atproto import Client, models
from atproto_client.exceptions import (
    AtProtocolError,
    BadRequestError,
    NetworkError,
    RateLimitExceededError,
    RequestErrorBase,
    UnauthorizedError,
)
from atproto_client.request import Request

from tertulia.channels.base import OutboundMessage, PermanentSendError, SendResult, TransientSendError

PROVIDER = "bluesky"
DEFAULT_SERVICE_URL = "https://bsky.social"
DEFAULT_TIMEOUT = 15.0
POST_COLLECTION = "app.bsky.feed.post"
MAX_GRAPHEMES = 300  # app.bsky.feed.post text: at most 300 graphemes (3000 bytes)
TOKEN_ERRORS = frozenset({"ExpiredToken", "InvalidToken"})
_POST_URI = re.compile(r"^at://(?P<authority>[^/]+)/app\.bsky\.feed\.post/(?P<rkey>[^/?#]+)$")
_S32 = "234567abcdefghijklmnopqrstuvwxyz"


# --- record keys -----------------------------------------------------------------------------


def tid_encode(timestamp_us: int, clock_id: int) -> str:
    """A TID (atproto's timestamp identifier): 53 bits of microseconds and a 10-bit clock id, base32-sortable."""
    value = ((timestamp_us & ((1 << 53) - 1)) << 10) | (clock_id & 1023)
    chars = []
    for _ in range(13):
        chars.append(_S32[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def delivery_rkey(*, store_id: int, delivery_id: int, created_at: datetime) -> str:
    """The record key of a delivery's reply: the same on every attempt, different for every delivery.

    The timestamp is the delivery's creation (to the millisecond) with the delivery id in the microseconds,
    and the clock id comes from a hash of store and delivery, so two deliveries created in the same
    millisecond still differ.
    """
    millis = int(created_at.timestamp() * 1000)
    clock = int.from_bytes(hashlib.sha256(f"tertulia:{store_id}:{delivery_id}".encode()).digest()[:2], "big")
    return tid_encode(millis * 1000 + delivery_id % 1000, clock)


def post_uri_parts(uri: str) -> tuple[str, str] | None:
    """(authority, rkey) of an app.bsky.feed.post at:// URI, else None."""
    match = _POST_URI.match(uri or "")
    return (match["authority"], match["rkey"]) if match else None


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- logged-in clients, shared by this adapter and the listening connector ---------------------

_clients: dict[tuple[str, str, str], Client] = {}
_clients_lock = threading.Lock()


def _client_key(service_url: str, handle: str, app_password: str) -> tuple[str, str, str]:
    return (service_url.rstrip("/"), handle.lower().lstrip("@"),
            hashlib.sha256(app_password.encode()).hexdigest())


def bluesky_client_cached(*, service_url: str, handle: str, app_password: str) -> Client | None:
    with _clients_lock:
        return _clients.get(_client_key(service_url, handle, app_password))


def bluesky_login(*, service_url: str, handle: str, app_password: str, timeout: float = DEFAULT_TIMEOUT) -> Client:
    """A client logged in with the account's app password, kept for the next caller (SDK errors propagate)."""
    client = Client(base_url=service_url, request=Request(timeout=timeout))
    # The profile lookup login() would make costs a request and tells us nothing the session does not.
    client.login(handle.lstrip("@"), app_password, fetch_bsky_profile=False)
    with _clients_lock:
        _clients[_client_key(service_url, handle, app_password)] = client
    return client


def bluesky_client_forget(*, service_url: str | None = None, handle: str | None = None,
                          app_password: str | None = None) -> None:
    """Drop one kept client (after the server refused its tokens), or all of them."""
    with _clients_lock:
        if service_url is None or handle is None or app_password is None:
            _clients.clear()
        else:
            _clients.pop(_client_key(service_url, handle, app_password), None)


def session_did(client: Client) -> str:
    session = getattr(client, "_session", None)  # the SDK keeps the logged-in session here
    return str(getattr(session, "did", "") or "")


def error_info(exc: AtProtocolError) -> dict[str, Any]:
    """The XRPC error body ({"error", "message"}) and status of an SDK exception, as plain data."""
    response = getattr(exc, "response", None) if isinstance(exc, RequestErrorBase) else None
    info: dict[str, Any] = {"http_status": getattr(response, "status_code", None), "error": "", "message": str(exc)}
    content = getattr(response, "content", None)
    if content is not None and hasattr(content, "error"):
        info["error"] = str(getattr(content, "error", "") or "")
        info["message"] = str(getattr(content, "message", "") or "") or info["message"]
    elif isinstance(content, dict):
        info["error"] = str(content.get("error") or "")
        info["message"] = str(content.get("message") or "") or info["message"]
    return info


# --- the adapter -----------------------------------------------------------------------------


class BlueskyReplyAdapter:
    provider = PROVIDER

    def __init__(self, *, service_url: str = DEFAULT_SERVICE_URL, handle: str, app_password: str,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.service_url = (service_url or DEFAULT_SERVICE_URL).rstrip("/")
        self.handle = handle.lstrip("@")
        self._app_password = app_password
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"BlueskyReplyAdapter({self.service_url}, {self.handle})"

    def _client(self, *, fresh: bool = False) -> Client:
        if fresh:
            bluesky_client_forget(service_url=self.service_url, handle=self.handle, app_password=self._app_password)
        else:
            client = bluesky_client_cached(service_url=self.service_url, handle=self.handle,
                                           app_password=self._app_password)
            if client is not None:
                return client
        try:
            return bluesky_login(service_url=self.service_url, handle=self.handle, app_password=self._app_password,
                                 timeout=self.timeout)
        except AtProtocolError as exc:
            raise bluesky_send_error(exc, login=True) from None

    def send(self, message: OutboundMessage) -> SendResult:
        context = message.reply_context or {}
        parent = {"uri": str(context.get("uri") or message.in_reply_to or ""), "cid": str(context.get("cid") or "")}
        if post_uri_parts(parent["uri"]) is None or not parent["cid"]:
            raise PermanentSendError("A Bluesky reply needs the at:// URI and CID of the post it answers.",
                                     provider=PROVIDER, code="invalid_reply_target",
                                     response={"in_reply_to": message.in_reply_to, "reply_context": context})
        root_ref = context.get("root") if isinstance(context.get("root"), dict) else {}
        root = {"uri": str(root_ref.get("uri") or parent["uri"]), "cid": str(root_ref.get("cid") or parent["cid"])}
        text = message.text.strip()
        if not text:
            raise PermanentSendError("The reply is empty.", provider=PROVIDER, code="invalid_message")
        if _graphemes(text) > MAX_GRAPHEMES:
            raise PermanentSendError(f"A Bluesky post has at most {MAX_GRAPHEMES} characters.", provider=PROVIDER,
                                     code="invalid_message", response={"length": len(text)})
        record: dict[str, Any] = {"$type": POST_COLLECTION, "text": text, "createdAt": iso_now(),
                                  "reply": {"root": root, "parent": parent}}
        if re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*", message.language or ""):
            record["langs"] = [message.language]
        facets = _recipient_facets(text, message.to, parent["uri"])
        if facets:
            record["facets"] = facets
        # Without the delivery's creation time (an adapter called by hand) the PDS picks the key: no retry safety.
        rkey = delivery_rkey(store_id=message.store_id, delivery_id=message.delivery_id,
                             created_at=message.created_at) if message.created_at else ""
        client = self._client()
        for attempt in (1, 2):
            repo = session_did(client) or self.handle
            data: dict[str, Any] = {"repo": repo, "collection": POST_COLLECTION, "record": record}
            if rkey:
                data["rkey"] = rkey
            try:
                created = client.com.atproto.repo.create_record(data)
            except AtProtocolError as exc:
                info = error_info(exc)
                if attempt == 1 and info["error"] in TOKEN_ERRORS:
                    client = self._client(fresh=True)  # the server ended our session: log in again, once
                    continue
                if rkey and _may_exist(exc):
                    existing = self._existing(client, repo, rkey, parent["uri"])
                    if existing is not None:
                        return existing
                raise bluesky_send_error(exc) from None
            answer = {"uri": created.uri, "cid": created.cid, "rkey": rkey or post_uri_parts(created.uri)[1],
                      "parent": parent["uri"], "root": root["uri"], "idempotent": bool(rkey)}
            return SendResult(provider=PROVIDER, provider_message_id=created.uri, provider_status="posted",
                              response=answer)
        raise PermanentSendError("Bluesky refused our session twice.", provider=PROVIDER, code="auth_failed")

    def _existing(self, client: Client, repo: str, rkey: str, parent_uri: str) -> SendResult | None:
        """The reply an earlier attempt of this delivery already created, if it is there."""
        params = models.ComAtprotoRepoGetRecord.Params(repo=repo, collection=POST_COLLECTION, rkey=rkey)
        try:
            found = client.invoke_query("com.atproto.repo.getRecord", params=params).content
        except AtProtocolError:
            return None
        if not isinstance(found, dict) or not isinstance(found.get("value"), dict):
            return None
        reply = found["value"].get("reply") or {}
        if not isinstance(reply, dict) or (reply.get("parent") or {}).get("uri") != parent_uri:
            raise PermanentSendError(f"The record key {rkey} holds another post.", provider=PROVIDER,
                                     code="provider_rejected", response={"uri": found.get("uri")})
        return SendResult(provider=PROVIDER, provider_message_id=str(found.get("uri")), provider_status="posted",
                          response={"uri": found.get("uri"), "cid": found.get("cid"), "rkey": rkey, "parent": parent_uri,
                                    "idempotent": True, "already_posted": True})

    def check(self) -> dict[str, Any]:
        client = self._client()
        return {"provider": PROVIDER, "service_url": self.service_url, "handle": self.handle,
                "did": session_did(client)}


def _graphemes(text: str) -> int:
    # Close enough without a grapheme library: combining marks and joiners do not start a new character.
    return sum(1 for char in text if not unicodedata.combining(char) and char not in "\u200d\ufe0f")


def _recipient_facets(text: str, to: str, parent_uri: str) -> list[dict[str, Any]]:
    """A mention facet for the person answered when the text names them (@handle), so Bluesky links it."""
    handle = (to or "").strip().lstrip("@")
    parts = post_uri_parts(parent_uri)
    if not handle or parts is None or not parts[0].startswith("did:"):
        return []
    needle = f"@{handle}"
    index = text.lower().find(needle.lower())
    if index < 0:
        return []
    start = len(text[:index].encode())
    return [{"index": {"byteStart": start, "byteEnd": start + len(needle.encode())},
             "features": [{"$type": "app.bsky.richtext.facet#mention", "did": parts[0]}]}]


def _may_exist(exc: AtProtocolError) -> bool:
    """Whether the record may be there already: a duplicate record key (500 today, 409 or 400 on newer
    servers) or a lost answer (network errors). Not for refusals that certainly created nothing."""
    if not isinstance(exc, RequestErrorBase) or isinstance(exc, RateLimitExceededError | UnauthorizedError):
        return False  # refused before or without reaching the server (a model or login error), or refused
    if isinstance(exc, BadRequestError):
        info = error_info(exc)
        return "exist" in f"{info['error']} {info['message']}".lower()
    return True


def bluesky_send_error(exc: AtProtocolError, *, login: bool = False) -> Exception:
    """The SDK's exceptions as the port's: network, 5xx and 429 transient; 400, 401 and the rest permanent."""
    info = error_info(exc)
    status = info["http_status"]
    text = f"Bluesky {status or ''} {info['error']}: {info['message']}".replace("  ", " ")
    if isinstance(exc, RateLimitExceededError):
        info |= {"ratelimit_reset": exc.reset_at.isoformat() if exc.reset_at else None, "retry_after": exc.retry_after}
        return TransientSendError(f"Bluesky rate limit: {info['message']}", provider=PROVIDER, code="rate_limited",
                                  response=info)
    if isinstance(exc, UnauthorizedError) or (login and isinstance(exc, BadRequestError)) \
            or info["error"] in TOKEN_ERRORS:
        return PermanentSendError(text, provider=PROVIDER, code="auth_failed", response=info)
    if isinstance(exc, NetworkError) and status in (None, 502):
        return TransientSendError(text, provider=PROVIDER, code="connection_error", response=info)
    if isinstance(status, int) and (status >= 500 or status == 408):
        return TransientSendError(text, provider=PROVIDER, code="provider_unavailable", response=info)
    return PermanentSendError(text, provider=PROVIDER, code="provider_rejected", response=info)
