"""Public replies on X (POST /2/tweets with reply.in_reply_to_tweet_id) through tweepy, and the tweepy glue
the X listening connector shares: clients pointed at any API base URL.

tweepy writes https://api.twitter.com into every request. `XHost`, a requests transport adapter mounted on
one client's own session (never a global patch), sends those requests to the configured base instead
(https://api.x.com, or the local sandbox) and, for OAuth 1.0a, signs them again, because the signature
covers the URL the server receives. It also gives every request a timeout (tweepy sets none) and keeps
the last response per thread, so callers can read X's rate-limit headers.

X has no idempotency key for posting. The risk: a reply that X created but whose answer was lost (a
timeout, a dropped connection, a 503 after the write) is retried by the dispatcher and would be posted
twice. X itself refuses identical text from the same account with a 403 "duplicate content"; when a
retry meets that refusal, the adapter looks at the account's own latest tweets for a reply to the same
tweet with the same text and, if it finds one, reports that tweet as the send (the earlier attempt did
land). A duplicate that is not ours (the same words sent to another tweet) stays a permanent error.
"""

import re
import threading
from datetime import UTC, datetime
from typing import Any

import orjson
import requests
import tweepy
from requests.adapters import HTTPAdapter
from requests.utils import should_bypass_proxies
from requests_oauthlib import OAuth1

from tertulia.channels.base import OutboundMessage, PermanentSendError, SendResult, TransientSendError

PROVIDER = "x"
TWEEPY_HOST = "https://api.twitter.com"
DEFAULT_API_BASE_URL = "https://api.x.com"
DEFAULT_TIMEOUT = 15.0
MAX_TEXT = 280
DUPLICATE = "duplicate content"
_LEADING_MENTIONS = re.compile(r"^(?:@\w+\s+)+")
_URL = re.compile(r"https?://\S+")


class XHost(HTTPAdapter):
    """Sends what tweepy addresses to api.twitter.com to `api_base_url`, with a timeout, re-signing OAuth 1.0a."""

    def __init__(self, api_base_url: str, *, oauth1: OAuth1 | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__()
        self.api_base_url = api_base_url.rstrip("/")
        self.oauth1 = oauth1
        self.timeout = timeout
        self._local = threading.local()

    @property
    def last_response(self) -> requests.Response | None:
        return getattr(self._local, "response", None)

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):  # noqa: ANN001 - requests' signature
        if request.url.startswith(TWEEPY_HOST):
            request.url = self.api_base_url + request.url[len(TWEEPY_HOST):]
            if self.oauth1 is not None and str(request.headers.get("Authorization", "")).startswith("OAuth "):
                del request.headers["Authorization"]
                self.oauth1(request)
            if proxies and should_bypass_proxies(request.url, no_proxy=None):
                # requests chose proxies for api.twitter.com; a local base (the sandbox) may bypass them.
                proxies = {}
        response = super().send(request, stream=stream, timeout=timeout or self.timeout, verify=verify, cert=cert,
                                proxies=proxies)
        if response.status_code >= 400:
            response.content  # noqa: B018 - read the (small) error body now; a stream's would be lost on close
        self._local.response = response
        return response


def oauth1_of(secrets: dict[str, Any]) -> OAuth1 | None:
    keys = ("consumer_key", "consumer_secret", "access_token", "access_token_secret")
    if not all(secrets.get(k) for k in keys):
        return None
    return OAuth1(secrets["consumer_key"], client_secret=secrets["consumer_secret"],
                  resource_owner_key=secrets["access_token"], resource_owner_secret=secrets["access_token_secret"],
                  decoding=None)


def user_context(secrets: dict[str, Any]) -> str:
    """Which user-context credentials a source has: "oauth1", "oauth2_user" or "" (app-only: cannot post)."""
    if oauth1_of(secrets) is not None:
        return "oauth1"
    if secrets.get("user_access_token"):
        return "oauth2_user"
    return ""


def x_client(*, api_base_url: str, secrets: dict[str, Any], user: bool = False,
             timeout: float = DEFAULT_TIMEOUT) -> tuple[tweepy.Client, XHost]:
    """A tweepy Client answering with raw requests.Response objects, on its own session pointed at the base.

    `user=False`: app-only (the Bearer token). `user=True`: the user context, OAuth 1.0a if the four keys
    are there, else the OAuth 2.0 user token (sent as a Bearer token: call methods with user_auth=False).
    """
    oauth1 = oauth1_of(secrets) if user else None
    if user and oauth1 is not None:
        client = tweepy.Client(consumer_key=secrets["consumer_key"], consumer_secret=secrets["consumer_secret"],
                               access_token=secrets["access_token"], access_token_secret=secrets["access_token_secret"],
                               return_type=requests.Response)
    else:
        token = secrets.get("user_access_token") if user else secrets.get("bearer_token")
        client = tweepy.Client(bearer_token=token or "", return_type=requests.Response)
    host = XHost(api_base_url, oauth1=oauth1, timeout=timeout)
    client.session.mount(TWEEPY_HOST + "/", host)
    return client, host


def x_streaming_client(*, api_base_url: str, bearer_token: str, stream_class: type[tweepy.StreamingClient],
                       timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> tuple[tweepy.StreamingClient, XHost]:
    """A StreamingClient (rules and the filtered stream, app-only) of `stream_class` on a session pointed at the base."""
    client = stream_class(bearer_token, return_type=requests.Response, max_retries=0, **kwargs)
    host = XHost(api_base_url, timeout=timeout)
    client.session.mount(TWEEPY_HOST + "/", host)
    return client, host


def response_json(response: requests.Response) -> Any:
    return orjson.loads(response.content) if response.content else {}


def api_detail(exc: tweepy.HTTPException) -> str:
    """X's own words for an error: the problem's detail, or the messages of `errors`."""
    messages = list(getattr(exc, "api_messages", None) or [])
    try:
        body = response_json(exc.response)
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        body = {}
    if isinstance(body, dict):
        for key in ("detail", "title"):
            if isinstance(body.get(key), str) and body[key] not in messages:
                messages.insert(0, body[key])
                break
    return "; ".join(str(m) for m in messages if m) or str(exc)


def reset_at(response: requests.Response | None) -> datetime | None:
    value = response.headers.get("x-rate-limit-reset") if response is not None else None
    try:
        return datetime.fromtimestamp(int(value), tz=UTC) if value else None
    except (TypeError, ValueError, OverflowError):
        return None


def _comparable(text: str) -> str:
    # X writes the answered @username before a reply and turns links into t.co ones.
    text = _LEADING_MENTIONS.sub("", text.strip())
    return " ".join(_URL.sub("", text).split())


class XReplyAdapter:
    """Answers a tweet from the store's X account (a listening source's user context)."""

    provider = PROVIDER

    def __init__(self, *, api_base_url: str = DEFAULT_API_BASE_URL, secrets: dict[str, Any], user_id: str = "",
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.api_base_url = api_base_url.rstrip("/")
        self.context = user_context(secrets)
        self._secrets = secrets
        self.user_id = str(user_id or "")
        self.timeout = timeout
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"XReplyAdapter({self.api_base_url}, {self.context or 'no user context'})"

    @classmethod
    def from_source(cls, config) -> "XReplyAdapter":
        settings = config.settings
        return cls(api_base_url=settings.get("api_base_url") or DEFAULT_API_BASE_URL, secrets=dict(config.secrets),
                   user_id=str(settings.get("user_id") or ""), timeout=float(settings.get("timeout") or DEFAULT_TIMEOUT))

    def _client(self) -> tweepy.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client, _host = x_client(api_base_url=self.api_base_url, secrets=self._secrets, user=True,
                                     timeout=self.timeout)
            self._local.client = client
        return client

    @property
    def _oauth1(self) -> bool:
        return self.context == "oauth1"

    def send(self, message: OutboundMessage) -> SendResult:
        if not self.context:
            raise PermanentSendError("This X source has no user-context credentials to post with (OAuth 1.0a keys or "
                                     "an OAuth 2.0 user token).", provider=PROVIDER, code="channel_misconfigured")
        if message.reply_context.get("direct"):
            raise PermanentSendError("Direct messages on X are not sent from here.", provider=PROVIDER,
                                     code="channel_not_supported")
        target = str(message.in_reply_to or "")
        if not target.isdigit():
            raise PermanentSendError(f"'{target}' is not a tweet id to answer.", provider=PROVIDER,
                                     code="invalid_message", response={"in_reply_to": target})
        text = message.text.strip()
        if not text or len(text) > MAX_TEXT:
            raise PermanentSendError(f"A reply on X has 1 to {MAX_TEXT} characters.", provider=PROVIDER,
                                     code="invalid_message", response={"length": len(text)})
        client = self._client()
        try:
            response = client.create_tweet(text=text, in_reply_to_tweet_id=target, user_auth=self._oauth1)
        except tweepy.Forbidden as exc:
            if DUPLICATE in api_detail(exc).lower():
                earlier = self._earlier_reply(target, text)
                if earlier is not None:
                    return SendResult(provider=PROVIDER, provider_message_id=earlier["id"], provider_status="posted",
                                      response={"id": earlier["id"], "text": earlier.get("text", ""),
                                                "recovered": "an earlier attempt had posted it"})
            raise x_send_error(exc) from None
        except (tweepy.TweepyException, requests.RequestException) as exc:
            raise x_send_error(exc) from None
        try:
            data = response_json(response)["data"]
            tweet_id = str(data["id"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            # Posted (2xx) but unreadable: retrying would post again; the duplicate check would then find it.
            raise TransientSendError(f"X answered {response.status_code} with an unreadable body: {exc}",
                                     provider=PROVIDER, code="unexpected_response",
                                     response={"body": response.text[:2000]}) from None
        return SendResult(provider=PROVIDER, provider_message_id=tweet_id, provider_status="posted",
                          response={"id": tweet_id, "text": data.get("text", "")})

    def _me(self) -> str:
        if not self.user_id:
            response = self._client().get_me(user_auth=self._oauth1)
            self.user_id = str(response_json(response)["data"]["id"])
        return self.user_id

    def _earlier_reply(self, target: str, text: str) -> dict[str, Any] | None:
        """Our own latest tweet answering `target` with this text, if one exists (a lost answer's tweet)."""
        try:
            response = self._client().get_users_tweets(
                self._me(), max_results=20, tweet_fields=["referenced_tweets", "created_at"],
                user_auth=self._oauth1)
            tweets = response_json(response).get("data") or []
        except (tweepy.TweepyException, requests.RequestException, orjson.JSONDecodeError, KeyError, TypeError):
            return None
        wanted = _comparable(text)
        for tweet in tweets:
            if not isinstance(tweet, dict):
                continue
            answers = {str(r.get("id")) for r in tweet.get("referenced_tweets") or []
                       if isinstance(r, dict) and r.get("type") == "replied_to"}
            if target in answers and _comparable(str(tweet.get("text", ""))) == wanted:
                return tweet
        return None

    def check(self) -> dict[str, Any]:
        try:
            return {"provider": PROVIDER, "api_base_url": self.api_base_url, "id": self._me(), "auth": self.context}
        except (tweepy.TweepyException, requests.RequestException) as exc:
            raise x_send_error(exc) from None


def x_send_error(exc: Exception) -> Exception:
    """tweepy's and requests' exceptions as the port's: 429, 5xx and the network transient; the rest permanent."""
    if isinstance(exc, requests.RequestException):
        return TransientSendError(f"X network error: {exc}", provider=PROVIDER, code="connection_error",
                                  response={"error": str(exc)})
    if not isinstance(exc, tweepy.HTTPException):
        return PermanentSendError(f"X error: {exc}", provider=PROVIDER, response={"error": str(exc)})
    status = exc.response.status_code
    detail = api_detail(exc)
    response: dict[str, Any] = {"http_status": status, "error": detail}
    reset = reset_at(exc.response)
    if reset is not None:
        response["rate_limit_reset"] = reset.isoformat()
    text = f"X {status}: {detail}"
    if isinstance(exc, tweepy.TooManyRequests):
        return TransientSendError(text, provider=PROVIDER, code="rate_limited", response=response)
    if isinstance(exc, tweepy.TwitterServerError) or status == 408:
        return TransientSendError(text, provider=PROVIDER, code="provider_unavailable", response=response)
    if status == 401:
        return PermanentSendError(text, provider=PROVIDER, code="auth_failed", response=response)
    if status == 403 and DUPLICATE in detail.lower():
        return PermanentSendError(text, provider=PROVIDER, code="duplicate_content", response=response)
    if status == 403 and "authenticating with" in detail.lower():  # X's "Unsupported Authentication"
        return PermanentSendError(text, provider=PROVIDER, code="auth_failed", response=response)
    code = "invalid_message" if status == 400 else "provider_rejected"
    return PermanentSendError(text, provider=PROVIDER, code=code, response=response)
