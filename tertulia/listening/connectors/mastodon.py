"""The Mastodon connector: a store's account hearing hashtags (streamed), searches and its own notifications.

Mastodon.py does the talking (`ratelimit_method="throw"`: it never sleeps; a 429 becomes RateLimited until
the X-RateLimit-Reset the server sent). What a source follows, from its settings:

- `hashtags` (and `public`: the federated timeline, or the local one with `local`): read through the
  streaming API (server-sent events, one connection per stream). A stream has no replay, so every
  session first opens its streams, then catches each timeline up over REST from the cursor's id
  (`min_id`: the statuses immediately newer, page after page, oldest first), then reads the streams.
  Whatever a stream brought during the catch-up is handed over once (ids seen in the session are
  skipped). Opening the streams before the catch-up leaves no window in which a status is in neither.
- `search_terms` (GET /api/v2/search?type=statuses, paged the same way with `min_id`) and
  `notifications` (on by default: mentions of the store's account and direct messages to it, GET
  /api/v1/notifications?types[]=mention): polled every `poll_seconds`.

The cursor keeps the newest id per feed, `{"hashtags": {tag: id}, "public": id, "search": {term: id},
"notifications": id}`, handed to `session.emit` with every page, so a restart resumes where the last
emit stopped: no gap, and no status handed over twice. A feed with no id yet starts with its newest
page. A catch-up longer than CATCH_UP_PAGES pages goes on at the next poll; until it is done, that
feed's stream hands its statuses over without moving the cursor past the ones still unread.

`SPEC.streaming` is True for every Mastodon source (a SPEC is per network, not per source). A source with
nothing to stream (only searches and notifications) polls once per session and asks for the next
session in `poll_seconds` (`session.next_run_in`), as a polling connector does, so it holds no worker
thread between polls. If the streaming server cannot be reached, the session falls back to that too:
the timelines are polled over REST, and the next session tries the streams again. A stream that ends
before the session's time (the streaming server restarted) fails the session (`stream_closed`, retried
with backoff; the next session catches up from the cursor). Edits (`status.update`) and deletions are
not followed: a mention keeps what was said when it was heard.

A status becomes a Post: external_id is the status id on the account's own server (what a reply's
`in_reply_to_id` takes); a boost is the boosted status; the store's own statuses are skipped; kind is
"direct" for a direct status, "mention" when it names the store's account or answers it, else "post".
Anything unreadable (an entry of the wrong shape, an event that is not JSON) is kept with
`session.malformed` and the rest carries on. 401 and 403 are AuthFailed; 404 means the address is not a
Mastodon API (misconfigured); 5xx and network errors are retried.
"""

import copy
import json
import logging
import queue
import re
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from django.utils import timezone
from mastodon import (
    Mastodon,
    MastodonAPIError,
    MastodonError,
    MastodonMalformedEventError,
    MastodonNetworkError,
    MastodonRatelimitError,
    StreamListener,
)

from tertulia.core.errors import ErrorDetail
from tertulia.listening.connectors import SourceConfig
from tertulia.listening.connectors.base import (
    AuthFailed,
    ConnectorError,
    Post,
    RateLimited,
    Session,
    SourceSpec,
    html_to_text,
)

log = logging.getLogger("tertulia.listening")

# Mastodon's documented budget: 300 requests per 5 minutes per account (docs.joinmastodon.org/api/rate-limits).
SPEC = SourceSpec(
    settings={"api_base_url": str, "hashtags": list, "public": bool, "local": bool, "search_terms": list,
              "notifications": bool, "poll_seconds": (int, float), "timeout": (int, float),
              "reply_visibility": str, "rate_limit": int},
    required_settings=frozenset({"api_base_url"}),
    secrets=frozenset({"access_token"}),
    required_secrets=frozenset({"access_token"}),
    rate_limit=300,
    rate_window=300.0,
    poll_seconds=60.0,
    min_poll_seconds=5.0,
    streaming=True,
)
PAGE = 40  # the most a timeline or a search answers at once
CATCH_UP_PAGES = 10
MAX_HASHTAGS = 10  # one streaming connection each
MAX_SEARCH_TERMS = 10
DEFAULT_TIMEOUT = 15.0
# Mastodon sends a heartbeat every 15 seconds; a minute without one means the connection is dead.
STREAM_READ_TIMEOUT = 60.0
BATCH_SECONDS = 0.25
BATCH_MAX = 500
USER_AGENT = "Tertulia"
REPLY_VISIBILITIES = ("public", "unlisted")
_TAG = re.compile(r"^\w{1,100}$")
_ID = re.compile(r"^[0-9A-Za-z]{1,64}$")


def validate(settings: dict[str, Any], secrets: dict[str, Any]) -> list[ErrorDetail]:
    problems = []
    parts = urlsplit(settings.get("api_base_url") or "")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        problems.append(ErrorDetail(field="settings.api_base_url", code="invalid",
                                    message="The server's address, e.g. https://mastodon.social."))
    hashtags = settings.get("hashtags") or []
    for index, tag in enumerate(hashtags):
        if not isinstance(tag, str) or not _TAG.match(tag.strip().lstrip("#")):
            problems.append(ErrorDetail(field="settings.hashtags", code="invalid", index=index,
                                        message="A hashtag: letters, digits and _ (the # is optional)."))
    if len(hashtags) > MAX_HASHTAGS:
        problems.append(ErrorDetail(field="settings.hashtags", code="too_many",
                                    message=f"At most {MAX_HASHTAGS} hashtags (each one is a stream)."))
    terms = settings.get("search_terms") or []
    for index, term in enumerate(terms):
        if not isinstance(term, str) or not term.strip() or len(term) > 200:
            problems.append(ErrorDetail(field="settings.search_terms", code="invalid", index=index,
                                        message="A search: 1 to 200 characters."))
    if len(terms) > MAX_SEARCH_TERMS:
        problems.append(ErrorDetail(field="settings.search_terms", code="too_many",
                                    message=f"At most {MAX_SEARCH_TERMS} searches."))
    if settings.get("reply_visibility") not in (None, *REPLY_VISIBILITIES):
        problems.append(ErrorDetail(field="settings.reply_visibility", code="invalid",
                                    message="public or unlisted."))
    timeout = settings.get("timeout")
    if timeout is not None and not 1 <= timeout <= 120:
        problems.append(ErrorDetail(field="settings.timeout", code="invalid", message="Between 1 and 120 seconds."))
    rate_limit = settings.get("rate_limit")
    if rate_limit is not None and not 1 <= rate_limit <= SPEC.rate_limit:
        problems.append(ErrorDetail(field="settings.rate_limit", code="invalid",
                                    message=f"Between 1 and {SPEC.rate_limit} requests per 5 minutes."))
    if not hashtags and not terms and not settings.get("public") and settings.get("notifications") is False:
        problems.append(ErrorDetail(field="settings", code="nothing_to_hear",
                                    message="Give hashtags, search_terms or public, or keep notifications on."))
    return problems


def build(config: SourceConfig) -> "MastodonConnector":
    return MastodonConnector(config)


def reply_adapter(config: SourceConfig):
    """The channel adapter that answers from this source's account (listening.replies)."""
    from tertulia.channels.adapters.mastodon import MastodonReplyAdapter

    return MastodonReplyAdapter(api_base_url=config.settings["api_base_url"],
                                access_token=config.secrets["access_token"],
                                timeout=float(config.settings.get("timeout") or DEFAULT_TIMEOUT),
                                widest_visibility=config.settings.get("reply_visibility") or "unlisted")


# --- statuses as posts ------------------------------------------------------------------------------


class Unreadable(Exception):
    """A status (or an entry) that is not what Mastodon documents."""


def id_key(value: str) -> tuple[int, str]:
    """Order of ids: Mastodon's are numbers in strings, other servers' ULIDs; both sort as (length, text)."""
    return len(value), value


def _id(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    return text if _ID.match(text) else None


def _moment(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Unreadable(f"created_at {value!r} is not a date") from None
    if not isinstance(value, datetime):
        raise Unreadable("created_at is missing")
    return value.replace(tzinfo=UTC) if timezone.is_naive(value) else value


def status_post(status: Any, *, me_id: str, domain: str, addressed: bool = False) -> Post:
    """A Mastodon Status entity as a Post (a boost as the boosted status); Unreadable if it is not one.

    `domain` qualifies the handles of the server's own accounts ("ana" -> "ana@mastodon.social"), so a
    handle names one person whichever server it was read on; `addressed` (a mention notification) makes
    it a mention even when the status does not list the account among its mentions.
    """
    if not isinstance(status, Mapping):
        raise Unreadable("a status is a JSON object")
    reblog = status.get("reblog")
    if reblog is not None:
        if not isinstance(reblog, Mapping):
            raise Unreadable("reblog is not a status")
        status = reblog
    status_id = _id(status.get("id"))
    if status_id is None:
        raise Unreadable("the status has no id")
    account = status.get("account")
    if not isinstance(account, Mapping) or _id(account.get("id")) is None \
            or not isinstance(account.get("acct"), str) or not account["acct"].strip():
        raise Unreadable("the status has no account (id and acct)")
    content = status.get("content")
    if not isinstance(content, str):
        raise Unreadable("content is not a string")
    posted_at = _moment(status.get("created_at"))
    visibility = status.get("visibility") or "public"
    if not isinstance(visibility, str):
        raise Unreadable("visibility is not a string")
    mentions = status.get("mentions") or []
    if not isinstance(mentions, list):
        raise Unreadable("mentions is not a list")
    named = any(isinstance(m, Mapping) and str(m.get("id")) == me_id for m in mentions)
    answers = str(status.get("in_reply_to_account_id") or "") == me_id
    kind = "direct" if visibility == "direct" else "mention" if (addressed or named or answers) else "post"
    acct = account["acct"].strip().lstrip("@")
    followers = account.get("followers_count")
    metrics = {name: value for name, key in (("likes", "favourites_count"), ("reposts", "reblogs_count"),
                                             ("replies", "replies_count"))
               if isinstance(value := status.get(key), int) and not isinstance(value, bool)}
    spoiler = status.get("spoiler_text")
    language = status.get("language")
    return Post(
        network="mastodon", external_id=status_id, text=html_to_text(content), posted_at=posted_at, kind=kind,
        url=str(status.get("url") or status.get("uri") or ""), author_id=str(account["id"]),
        author_handle=acct if "@" in acct or not domain else f"{acct}@{domain}",
        author_name=str(account.get("display_name") or ""),
        author_followers=followers if isinstance(followers, int) and not isinstance(followers, bool) else None,
        title=spoiler if isinstance(spoiler, str) else "", language=language if isinstance(language, str) else "",
        in_reply_to=_id(status.get("in_reply_to_id")) or "",
        reply_ref={"visibility": visibility, "acct": acct}, metrics=metrics,
    )


def _raw(value: Any) -> str:
    """What the server sent, as JSON again (Mastodon.py hands over parsed JSON; its dates become text)."""
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


# --- errors and the request budget -------------------------------------------------------------------


def connector_error(exc: MastodonError, *, reset_at: datetime | None = None) -> ConnectorError:
    """Mastodon.py's exceptions as the connector port's."""
    from tertulia.channels.adapters.mastodon import api_error_details

    if isinstance(exc, MastodonRatelimitError):
        wait = (reset_at - timezone.now()).total_seconds() if reset_at else SPEC.rate_window
        return RateLimited(f"Mastodon rate limit: {exc}", retry_after=max(wait, 1.0))
    if isinstance(exc, MastodonNetworkError):
        return ConnectorError(f"Mastodon could not be reached: {exc}", code="connection_error")
    if isinstance(exc, MastodonAPIError):
        status, reason, detail = api_error_details(exc)
        text = f"Mastodon answered {status or ''} {reason or ''}: {detail}".replace("  ", " ")
        if status in (401, 403):
            return AuthFailed(f"{text} (check the access token and its scopes: read)")
        if status == 404:
            return ConnectorError(f"{text} (is api_base_url the Mastodon server?)", code="misconfigured",
                                  transient=False)
        if not isinstance(status, int) or status >= 500 or status == 408:
            return ConnectorError(text, code="provider_unavailable")
        return ConnectorError(text, code="provider_rejected", transient=False)
    return ConnectorError(f"Mastodon error: {exc}", code="provider_error")


def _reset(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        if value.strip().isdigit():
            return datetime.fromtimestamp(int(value), UTC)
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        return None
    return moment.replace(tzinfo=UTC) if timezone.is_naive(moment) else moment


class _Budget:
    """Every request the session's thread makes, the SDK's own included, counted before it goes out."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.owner = threading.get_ident()
        self.remaining: int | None = None
        self.reset_at: datetime | None = None
        self.stopped: RateLimited | None = None

    def before(self) -> None:
        if threading.get_ident() != self.owner:
            return  # a stream's thread: streams were counted when they were opened
        try:
            self.session.throttle()
            if self.remaining is not None and (self.reset_at is None or self.reset_at > timezone.now()):
                self.session.rate_limit_seen(remaining=self.remaining, reset_at=self.reset_at)
        except RateLimited as exc:
            # Raised inside requests, Mastodon.py would turn it into a network error: kept to be raised again.
            self.stopped = exc
            raise

    def after(self, response: requests.Response) -> None:
        if threading.get_ident() != self.owner:
            return
        remaining = response.headers.get("X-RateLimit-Remaining")
        if remaining is not None and remaining.strip().lstrip("-").isdigit():
            self.remaining = int(remaining)
            self.reset_at = _reset(response.headers.get("X-RateLimit-Reset"))


class _CountedSession(requests.Session):
    def __init__(self, budget: _Budget) -> None:
        super().__init__()
        self.budget = budget

    def request(self, method, url, *args, **kwargs):
        self.budget.before()
        response = super().request(method, url, *args, **kwargs)
        self.budget.after(response)
        return response


# --- streams ------------------------------------------------------------------------------------------


class _Stopped(Exception):  # noqa: N818 - not an error: the session is over
    pass


class _Listener(StreamListener):
    """Puts what one stream brings on the session's queue; the session's thread does everything else."""

    def __init__(self, feed: "_Feed", events: queue.Queue) -> None:
        self.feed = feed
        self.events = events
        self.stop = threading.Event()
        self.connected = threading.Event()
        self.response = None
        self._data: str | None = None

    def handle_stream(self, response) -> None:
        self.response = response
        self.connected.set()
        super().handle_stream(response)

    def handle_heartbeat(self) -> None:
        if self.stop.is_set():
            raise _Stopped

    def on_update(self, status) -> None:
        if self.stop.is_set():
            raise _Stopped
        self.events.put(("status", self.feed, status, self._data))

    # Mastodon.py ends the whole stream at the first event it cannot parse; one bad event is kept as
    # malformed instead, and the stream goes on.
    def _parse_line(self, line, event):
        try:
            return super()._parse_line(line, event)
        except MastodonMalformedEventError as exc:
            self.events.put(("malformed", self.feed, line, f"a line that is not 'field: value': {exc}"))
            return event

    def _dispatch(self, event) -> None:
        self._data = event.get("data")
        try:
            super()._dispatch(event)
        except MastodonMalformedEventError as exc:
            text = "\n".join(f"{name}: {value}" for name, value in event.items())
            self.events.put(("malformed", self.feed, text, f"an event Mastodon.py cannot read: {exc.args!r}"[:500]))


class _Stream:
    def __init__(self, client: Mastodon, feed: "_Feed", events: queue.Queue, *, local: bool) -> None:
        self.feed = feed
        self.listener = _Listener(feed, events)
        self.client = client
        self.local = local
        self.events = events
        self.error: BaseException | None = None
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"mastodon-stream-{feed.name or feed.kind}")

    def _run(self) -> None:
        try:
            if self.feed.kind == "hashtag":
                self.client.stream_hashtag(self.feed.name, self.listener, local=self.local,
                                           timeout=STREAM_READ_TIMEOUT)
            else:
                self.client.stream_public(self.listener, local=self.local, timeout=STREAM_READ_TIMEOUT)
        except _Stopped:
            pass
        except Exception as exc:  # noqa: BLE001 - told to the session's thread, which decides
            self.error = exc
        finally:
            self.ended.set()
            self.events.put(("ended", self.feed, self.error))

    def close(self) -> None:
        """Stop the stream's thread without waiting for it.

        Closing the response would wait for the thread's blocked read (up to the next heartbeat), so the
        socket is shut down instead: the read returns at once, and the thread closes the rest as it ends.
        """
        self.listener.stop.set()
        response = self.listener.response
        sock = getattr(getattr(getattr(response, "raw", None), "connection", None), "sock", None)
        if sock is None:
            return  # not connected yet, or gone: the stop flag ends the thread at its next event
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed


# --- the connector ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Feed:
    kind: str  # hashtag | public | search | notifications
    name: str = ""  # the hashtag, or the search
    streamed: bool = False
    behind: bool = False  # catch-up not finished: the stream must not move the cursor past what is unread

    def get(self, cursor: dict[str, Any]) -> str | None:
        if self.kind in ("hashtag", "search"):
            group = cursor.get("hashtags" if self.kind == "hashtag" else "search")
            value = group.get(self.name) if isinstance(group, dict) else None
        else:
            value = cursor.get(self.kind)
        return _id(value)

    def set(self, cursor: dict[str, Any], value: str) -> None:
        if self.kind in ("hashtag", "search"):
            group = cursor.setdefault("hashtags" if self.kind == "hashtag" else "search", {})
            if not isinstance(group, dict):
                group = cursor["hashtags" if self.kind == "hashtag" else "search"] = {}
            group[self.name] = value
        else:
            cursor[self.kind] = value

    def label(self) -> str:
        return {"hashtag": f"#{self.name}", "search": f"search '{self.name}'"}.get(self.kind, self.kind)


class MastodonConnector:
    network = "mastodon"

    def __init__(self, config: SourceConfig) -> None:
        settings = config.settings
        self.api_base_url = str(settings["api_base_url"]).rstrip("/")
        self.access_token = str(config.secrets.get("access_token") or "")
        self.timeout = float(settings.get("timeout") or DEFAULT_TIMEOUT)
        self.poll_seconds = float(settings.get("poll_seconds") or SPEC.poll_seconds)
        self.local = bool(settings.get("local"))
        tags = dict.fromkeys(str(t).strip().lstrip("#").lower() for t in settings.get("hashtags") or [])
        terms = dict.fromkeys(str(t).strip() for t in settings.get("search_terms") or [])
        self.streamed = [_Feed("hashtag", tag, streamed=True) for tag in tags if tag]
        if settings.get("public"):
            self.streamed.append(_Feed("public", streamed=True))
        self.polled = [_Feed("search", term) for term in terms if term]
        if settings.get("notifications", True):
            self.polled.append(_Feed("notifications"))

    # The session's work.

    def run(self, session: Session) -> None:
        self.session = session
        self.budget = _Budget(session)
        self.cursor = self._cursor_kept(session.cursor or {})
        self.emitted = copy.deepcopy(self.cursor) if self.cursor == (session.cursor or {}) else None
        self.seen: set[str] = set()
        client = self._client()
        me = self._call(client.account_verify_credentials)
        me_id = _id(me.get("id")) if isinstance(me, Mapping) else None
        if me_id is None:
            session.malformed(_raw(me), error="verify_credentials answered no account id", code="unexpected_shape")
            raise ConnectorError("Mastodon did not say which account the token is for.", code="unexpected_response")
        self.me_id = me_id
        self.domain = self._domain(client)
        events: queue.Queue = queue.Queue()
        streams = self._streams_open(events) if self.streamed else []
        try:
            for feed in self.streamed + self.polled:
                self._catch_up(client, feed)
            if not streams:
                session.next_run_in(self.poll_seconds)
                return
            self._listen(client, streams, events)
        finally:
            for stream in streams:
                stream.close()

    def _cursor_kept(self, cursor: dict[str, Any]) -> dict[str, Any]:
        """The cursor's ids of the feeds still followed: a hashtag dropped and added again months later
        starts from its newest page, not from a backlog of months."""
        kept: dict[str, Any] = {}
        for feed in self.streamed + self.polled:
            value = feed.get(cursor)
            if value is not None:
                feed.set(kept, value)
        return kept

    def _listen(self, client: Mastodon, streams: list[_Stream], events: queue.Queue) -> None:
        session = self.session
        next_poll = time.monotonic() + self.poll_seconds
        while not session.should_stop():
            items = _drain(events, BATCH_SECONDS)
            ended = self._stream_items(items)
            if ended is not None and not session.should_stop():
                feed, error = ended
                raise ConnectorError(f"The Mastodon stream of {feed.label()} ended"
                                     + (f": {error}" if error else "") + "; the next session catches up.",
                                     code="stream_closed")
            if time.monotonic() >= next_poll:
                for feed in self.polled + [f for f in self.streamed if f.behind]:
                    self._catch_up(client, feed)
                next_poll = time.monotonic() + self.poll_seconds
            session.heartbeat()

    def _stream_items(self, items: list[tuple]) -> tuple["_Feed", BaseException | None] | None:
        posts: list[Post] = []
        newest_at = None
        ended = None
        for item in items:
            kind, feed = item[0], item[1]
            if kind == "malformed":
                self.session.malformed(item[2], error=item[3], code="malformed_event")
            elif kind == "ended":
                ended = ended or (feed, item[2])
            else:
                status, data = item[2], item[3]
                status_id = _id(status.get("id")) if isinstance(status, Mapping) else None
                post = self._post(status, raw=data if isinstance(data, str) else _raw(status))
                if post is not None:
                    posts.append(post)
                    newest_at = max(newest_at or post.posted_at, post.posted_at)
                current = feed.get(self.cursor)
                if status_id and not feed.behind and (current is None or id_key(status_id) > id_key(current)):
                    feed.set(self.cursor, status_id)
        self._emit(posts, newest_at)
        return ended

    # Polling.

    def _catch_up(self, client: Mastodon, feed: _Feed) -> None:
        """Read a feed from the cursor's id forward, a page at a time, each page emitted with its cursor."""
        for _page in range(CATCH_UP_PAGES):
            since = feed.get(self.cursor)
            entries = self._fetch(client, feed, since)
            posts, newest_id, newest_at = self._read(feed, entries)
            advanced = newest_id is not None and (since is None or id_key(newest_id) > id_key(since))
            if advanced:
                feed.set(self.cursor, newest_id)
            self._emit(posts, newest_at)
            if since is None or not advanced or len(entries) < PAGE:
                feed.behind = False
                return
        feed.behind = True

    def _fetch(self, client: Mastodon, feed: _Feed, since: str | None) -> list:
        if feed.kind == "hashtag":
            answer = self._call(client.timeline_hashtag, feed.name, local=self.local, min_id=since, limit=PAGE)
        elif feed.kind == "public":
            answer = self._call(client.timeline_public, local=self.local, min_id=since, limit=PAGE)
        elif feed.kind == "search":
            result = self._call(client.search_v2, feed.name, resolve=False, result_type="statuses", min_id=since,
                                limit=PAGE, exclude_unreviewed=False)
            answer = result.get("statuses") if isinstance(result, Mapping) else result
        else:
            answer = self._call(client.notifications, types=["mention"], min_id=since, limit=PAGE)
        if not isinstance(answer, list):
            self.session.malformed(_raw(answer), error=f"{feed.label()}: the answer is not a list",
                                   code="unexpected_shape")
            return []
        return answer

    def _read(self, feed: _Feed, entries: Sequence) -> tuple[list[Post], str | None, datetime | None]:
        posts: list[Post] = []
        newest_id: str | None = None
        newest_at: datetime | None = None
        for entry in entries:
            entry_id = _id(entry.get("id")) if isinstance(entry, Mapping) else None
            if entry_id is not None and (newest_id is None or id_key(entry_id) > id_key(newest_id)):
                newest_id = entry_id
            if feed.kind == "notifications":
                if entry_id is None or not isinstance(entry, Mapping):
                    self.session.malformed(_raw(entry), error="a notification without an id", code="unexpected_shape")
                    continue
                if entry.get("type") != "mention":
                    continue  # a server that ignores types[]: only mentions are heard
                post = self._post(entry.get("status"), raw=_raw(entry), addressed=True)
            else:
                post = self._post(entry, raw=_raw(entry))
            if post is not None:
                posts.append(post)
                newest_at = max(newest_at or post.posted_at, post.posted_at)
        return posts, newest_id, newest_at

    def _post(self, status: Any, *, raw: str, addressed: bool = False) -> Post | None:
        """The Post of a status, or None: the store's own, one handed over already, or unreadable (kept as `raw`)."""
        try:
            post = status_post(status, me_id=self.me_id, domain=self.domain, addressed=addressed)
        except Unreadable as exc:
            self.session.malformed(raw, error=str(exc), code="unexpected_shape")
            return None
        if post.author_id == self.me_id or post.external_id in self.seen:
            return None  # the store's own status, or one this session handed over already
        self.seen.add(post.external_id)
        return post

    def _emit(self, posts: list[Post], newest_at: datetime | None) -> None:
        if not posts and self.cursor == self.emitted:
            return
        self.session.emit(posts, copy.deepcopy(self.cursor), newest_at=newest_at)
        self.emitted = copy.deepcopy(self.cursor)

    # Talking to the server.

    def _client(self) -> Mastodon:
        return Mastodon(access_token=self.access_token, api_base_url=self.api_base_url, ratelimit_method="throw",
                        request_timeout=self.timeout, version_check_mode="none", user_agent=USER_AGENT,
                        session=_CountedSession(self.budget))

    def _call(self, method, *args, **kwargs):
        self.budget.stopped = None
        try:
            return method(*args, **kwargs)
        except MastodonError as exc:
            if self.budget.stopped is not None:
                raise self.budget.stopped from None
            raise connector_error(exc, reset_at=self.budget.reset_at) from None

    def _domain(self, client: Mastodon) -> str:
        """The server's own domain, which its local accounts' handles leave out."""
        try:
            document = self._call(client.instance_v2)
        except ConnectorError as exc:
            if exc.code != "misconfigured":
                raise
            document = {}  # before Mastodon 4.0 there is no v2 document
        domain = document.get("domain") if isinstance(document, Mapping) else None
        return domain if isinstance(domain, str) and domain else (urlsplit(self.api_base_url).netloc or "")

    def _streams_open(self, events: queue.Queue) -> list[_Stream]:
        """Open every stream and wait until each is connected; none at all if any fails (the session polls)."""
        client = self._client()
        try:
            # Also finds the streaming server's address (instance documents) on this thread, so it is counted.
            self._call(client.stream_healthy)
        except ConnectorError as exc:
            if isinstance(exc, RateLimited | AuthFailed):
                raise
            log.warning("mastodon streaming unavailable, polling instead",
                        extra={"source_id": self.session.source_id, "error": str(exc)[:500]})
            return []
        self.session.throttle(len(self.streamed))
        streams = [_Stream(client, feed, events, local=self.local) for feed in self.streamed]
        for stream in streams:
            stream.thread.start()
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if all(s.listener.connected.is_set() for s in streams) or any(s.ended.is_set() for s in streams):
                break
            self.session.heartbeat()
            time.sleep(0.02)
        failed = [s for s in streams if not s.listener.connected.is_set() or s.ended.is_set()]
        if failed:
            for stream in streams:
                stream.close()
            log.warning("mastodon stream could not be opened, polling instead",
                        extra={"source_id": self.session.source_id, "stream": failed[0].feed.label(),
                               "error": str(failed[0].error or "no answer in time")[:500]})
            while not events.empty():  # what the failed attempt queued says nothing the polls will not
                events.get_nowait()
            return []
        return streams


def _drain(events: queue.Queue, wait: float) -> list[tuple]:
    try:
        items = [events.get(timeout=wait)]
    except queue.Empty:
        return []
    while len(items) < BATCH_MAX:
        try:
            items.append(events.get_nowait())
        except queue.Empty:
            break
    return items
