"""The Bluesky connector: the Jetstream firehose filtered on the fly, post search, and the account's notifications.

A source listens in up to three ways (settings):

- `firehose`: the Jetstream WebSocket (`jetstream_url`, `wantedCollections=app.bsky.feed.post`), every
  public post of the network as it is made. Each post is matched against the store's tracked terms here
  (listening.selectors.matcher_cached, no query per post), so of the millions only the ones that name
  the store reach the database; a post answering, quoting or mentioning the store's own account is kept
  whatever it says. What is kept goes out in small batches (every BATCH_POSTS posts or FLUSH_SECONDS)
  with the cursor: Jetstream's `time_us` of the last event read. A new session subscribes from that time
  minus CURSOR_REWIND_US, as Jetstream's documentation advises, so nothing is missed across a restart;
  what is heard twice is stored once (a mention's unique key).
- `search_terms`: app.bsky.feed.searchPosts for each term (newest first, `since` the newest post seen
  minus SEARCH_OVERLAP), every `poll_seconds`.
- `mentions`: app.bsky.notification.listNotifications (mention, reply, quote) of the account: posts
  addressed to the store, kept as kind "mention" whatever they say. An answer to one of our replies comes
  this way and threads into its conversation.

Search, notifications and profile lookups (followers, handles of firehose posts) go through the atproto
SDK logged in with the account's `handle` and an app password (secret `app_password`); the session is
kept per process and refreshed by the SDK. Bluesky's budget is 3,000 requests per 5 minutes: every
request goes through `session.throttle()`, and the RateLimit-* headers of every answer through
`session.rate_limit_seen()`. With `firehose` the source streams (sessions of
TERTULIA_LISTENING_STREAM_SECONDS, polls in between); without it, it polls.

Posts become `Post`s with the at:// URI as external id, https://bsky.app/profile/<handle or DID>/post/<rkey>
as url, `in_reply_to`/`thread_root` from the record's reply refs, and `reply_ref` {"uri", "cid",
"root": {"uri", "cid"}}, which is what a reply needs (`reply_adapter`, channels/adapters/bluesky.py).
"""

import logging
import time
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
from atproto import models
from atproto_client.exceptions import (
    AtProtocolError,
    BadRequestError,
    NetworkError,
    RateLimitExceededError,
    UnauthorizedError,
)
from django.utils import timezone
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from tertulia.channels.adapters.bluesky import (
    DEFAULT_SERVICE_URL,
    POST_COLLECTION,
    TOKEN_ERRORS,
    BlueskyReplyAdapter,
    bluesky_client_cached,
    bluesky_client_forget,
    bluesky_login,
    error_info,
    post_uri_parts,
    session_did,
)
from tertulia.channels.base import PermanentSendError
from tertulia.core.errors import ErrorDetail
from tertulia.listening.connectors.base import (
    AuthFailed,
    ConnectorError,
    Post,
    RateLimited,
    Session,
    SourceSpec,
)
from tertulia.listening.selectors import matcher_cached

log = logging.getLogger("tertulia.listening")

NETWORK = "bluesky"
DEFAULT_JETSTREAM_URL = "wss://jetstream2.us-east.bsky.network/subscribe"
SPEC = SourceSpec(
    settings={"service_url": str, "jetstream_url": str, "handle": str, "search_terms": list, "mentions": bool,
              "firehose": bool, "profiles": bool, "poll_seconds": (int, float), "timeout": (int, float)},
    secrets=frozenset({"app_password"}),
    rate_limit=3000, rate_window=300,  # Bluesky's documented budget per account
    poll_seconds=60, min_poll_seconds=10, streaming=True,
)
CURSOR_REWIND_US = 5_000_000  # replay the last seconds again on reconnect: Jetstream's advice for no gap
BATCH_POSTS = 100
FLUSH_SECONDS = 1.0  # kept posts wait at most this long for their batch
CURSOR_SECONDS = 5.0  # with nothing kept, the cursor is written this often
RECV_SECONDS = 0.25
RECONNECT_SECONDS = 1.0  # after the server closed the stream politely (a deploy)
MAX_EVENT_BYTES = 4 * 1024 * 1024
SEARCH_OVERLAP = timedelta(minutes=5)  # search is by sortAt, which an index lag can put behind what we saw
NOTIFICATION_OVERLAP = timedelta(minutes=1)
FIRST_LOOKBACK = timedelta(hours=24)  # a new source reads back one day, not the account's whole history
MAX_PAGES = 5
SEARCH_LIMIT = 100
NOTIFICATION_LIMIT = 50
PROFILE_BATCH = 25  # app.bsky.actor.getProfiles takes at most 25 actors
MAX_TERMS = 50
MENTION_REASONS = ("mention", "reply", "quote")


def validate(settings: dict[str, Any], secrets: dict[str, Any]) -> list[ErrorDetail]:
    problems: list[ErrorDetail] = []
    terms = settings.get("search_terms") or []
    if not all(isinstance(t, str) and t.strip() and len(t) <= 200 for t in terms) or len(terms) > MAX_TERMS:
        problems.append(ErrorDetail(field="settings.search_terms", code="invalid",
                                    message=f"At most {MAX_TERMS} non-empty terms of at most 200 characters."))
    if not terms and not settings.get("mentions") and not settings.get("firehose"):
        problems.append(ErrorDetail(field="settings", code="required",
                                    message="Listen somehow: search_terms, mentions or firehose."))
    # The app password is checked when the source runs: a change of settings keeps the stored secrets,
    # and validate() does not see those.
    if (terms or settings.get("mentions")) and not settings.get("handle"):
        problems.append(ErrorDetail(field="settings.handle", code="required",
                                    message="Search and mentions need the account's handle (and an app password)."))
    for name, schemes in (("service_url", ("http", "https")), ("jetstream_url", ("ws", "wss"))):
        value = settings.get(name)
        if value is not None and (urlsplit(value).scheme not in schemes or not urlsplit(value).netloc):
            problems.append(ErrorDetail(field=f"settings.{name}", code="invalid",
                                        message=f"A {' or '.join(schemes)} URL."))
    timeout = settings.get("timeout")
    if timeout is not None and not 1 <= timeout <= 120:
        problems.append(ErrorDetail(field="settings.timeout", code="invalid", message="Between 1 and 120 seconds."))
    return problems


def build(config) -> "BlueskyConnector":
    return BlueskyConnector(config)


def reply_adapter(config) -> BlueskyReplyAdapter:
    """The channel adapter that answers posts heard by this source, from its own account."""
    settings, secrets = config.settings, config.secrets
    if not settings.get("handle") or not secrets.get("app_password"):
        raise PermanentSendError(f"The Bluesky source '{config.key}' has no handle and app password to answer with.",
                                 provider="bluesky", code="channel_misconfigured")
    return BlueskyReplyAdapter(service_url=settings.get("service_url") or DEFAULT_SERVICE_URL,
                               handle=settings["handle"], app_password=secrets["app_password"],
                               timeout=float(settings.get("timeout") or 15))


class BlueskyConnector:
    network = NETWORK

    def __init__(self, config) -> None:
        self.config = config

    def run(self, session: Session) -> None:
        listening = _Listening(self.config, session)
        if (listening.search_terms or listening.mentions) and not listening.can_login:
            raise ConnectorError("Search and mentions need the account's handle and an app password (secret "
                                 "app_password).", code="misconfigured", transient=False)
        if listening.firehose:
            listening.stream()
        else:
            listening.poll()
            session.next_run_in(listening.poll_seconds)


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _from_micros(time_us: int) -> datetime:
    return datetime.fromtimestamp(time_us / 1_000_000, UTC)


class _Listening:
    """One session's work: the stream, the polls, the login, and the cursor they all write."""

    def __init__(self, config, session: Session) -> None:
        settings = config.settings
        self.session = session
        self.store_id = session.store_id
        self.service_url = (settings.get("service_url") or DEFAULT_SERVICE_URL).rstrip("/")
        self.jetstream_url = settings.get("jetstream_url") or DEFAULT_JETSTREAM_URL
        self.handle = str(settings.get("handle") or "").lstrip("@")
        self.app_password = str(config.secrets.get("app_password") or "")
        self.search_terms = [t.strip() for t in settings.get("search_terms") or [] if isinstance(t, str) and t.strip()]
        self.mentions = bool(settings.get("mentions"))
        self.firehose = bool(settings.get("firehose"))
        self.profiles = settings.get("profiles", True) is not False
        self.poll_seconds = float(settings.get("poll_seconds") or SPEC.poll_seconds)
        self.timeout = float(settings.get("timeout") or 15)
        self.cursor: dict[str, Any] = dict(session.cursor or {})
        self.can_login = bool(self.handle and self.app_password)
        self.polls = bool(self.search_terms or self.mentions) and self.can_login
        self.own_did = str(self.cursor.get("did") or "")
        self._profiles: dict[str, dict[str, Any]] = {}
        # The stream's state.
        self.time_us = int(self.cursor.get("jetstream_time_us") or 0)
        self.emitted_time_us = self.time_us
        self.pending: list[Post] = []
        self.last_emit = time.monotonic()

    # --- the account ---------------------------------------------------------------------------

    def _client(self, *, fresh: bool = False):
        if fresh:
            bluesky_client_forget(service_url=self.service_url, handle=self.handle, app_password=self.app_password)
        else:
            client = bluesky_client_cached(service_url=self.service_url, handle=self.handle,
                                           app_password=self.app_password)
            if client is not None:
                self._remember_did(client)
                return client
        self.session.throttle()
        try:
            client = bluesky_login(service_url=self.service_url, handle=self.handle, app_password=self.app_password,
                                   timeout=self.timeout)
        except AtProtocolError as exc:
            info = error_info(exc)
            if isinstance(exc, UnauthorizedError | BadRequestError) and not isinstance(exc, RateLimitExceededError):
                hint = " (use an app password: Settings > Privacy and security > App passwords)" \
                    if info["error"] == "AuthFactorTokenRequired" else ""
                raise AuthFailed(f"Bluesky refused the login of {self.handle}: {info['message']}{hint}") from None
            raise _connector_error(exc, "com.atproto.server.createSession") from None
        self._remember_did(client)
        return client

    def _remember_did(self, client) -> None:
        did = session_did(client)
        if did and did != self.own_did:
            self.own_did = self.cursor["did"] = did

    def _query(self, nsid: str, params: Any) -> dict[str, Any] | None:
        """One XRPC query through the SDK, counted against the budget; its JSON answer (None if not an object)."""
        for attempt in (1, 2):
            client = self._client(fresh=attempt == 2)
            self.session.throttle()
            try:
                response = client.invoke_query(nsid, params=params)
            except AtProtocolError as exc:
                info = error_info(exc)
                if attempt == 1 and (info["error"] in TOKEN_ERRORS or isinstance(exc, UnauthorizedError)):
                    continue  # the server ended our session: log in again, once
                raise _connector_error(exc, nsid) from None
            headers = response.headers or {}
            remaining, reset = headers.get("ratelimit-remaining"), headers.get("ratelimit-reset")
            if remaining is not None and str(remaining).isdigit():
                reset_at = datetime.fromtimestamp(int(reset), UTC) if reset and str(reset).isdigit() else None
                self.session.rate_limit_seen(remaining=int(remaining), reset_at=reset_at)
            if not isinstance(response.content, dict):
                self.session.malformed(repr(response.content)[:100_000], error=f"{nsid} did not answer a JSON object",
                                       code="unexpected_shape")
                return None
            return response.content
        raise AuthFailed(f"Bluesky refused the session of {self.handle} twice.")

    # --- turning platform data into Posts ------------------------------------------------------

    def _post(self, *, uri: str, cid: str, did: str, handle: str, name: str, record: dict[str, Any],
              posted_at: datetime, kind: str, metrics: dict[str, int] | None = None) -> Post:
        rkey = post_uri_parts(uri)[1]
        reply = record.get("reply") if isinstance(record.get("reply"), dict) else {}
        parent = reply.get("parent") if isinstance(reply.get("parent"), dict) else {}
        root = reply.get("root") if isinstance(reply.get("root"), dict) else {}
        root_ref = {"uri": root["uri"], "cid": root["cid"]} if isinstance(root.get("uri"), str) \
            and isinstance(root.get("cid"), str) else {"uri": uri, "cid": cid}
        langs = record.get("langs")
        language = langs[0] if isinstance(langs, list) and langs and isinstance(langs[0], str) else ""
        handle = handle if handle and handle != "handle.invalid" else ""
        return Post(
            network=NETWORK, external_id=uri, text=record["text"], posted_at=posted_at, kind=kind,
            url=f"https://bsky.app/profile/{handle or did}/post/{rkey}", author_id=did,
            author_handle=handle or did, author_name=name or "", language=language[:16],
            in_reply_to=parent.get("uri") if isinstance(parent.get("uri"), str) else "",
            thread_root=root.get("uri") if isinstance(root.get("uri"), str) else "",
            reply_ref={"uri": uri, "cid": cid, "root": root_ref}, metrics=metrics or {},
        )

    def _post_from_view(self, item: Any, *, kind: str) -> Post | None:
        """A post of a postView (search) or a notification; malformed ones are kept aside and skipped."""
        problem = ""
        if not isinstance(item, dict):
            problem = "not an object"
        else:
            author, record = item.get("author"), item.get("record")
            if post_uri_parts(item.get("uri") or "") is None:
                problem = "uri is not an app.bsky.feed.post at:// URI"
            elif not isinstance(item.get("cid"), str) or not item["cid"]:
                problem = "cid missing"
            elif not isinstance(author, dict) or not isinstance(author.get("did"), str):
                problem = "author.did missing"
            elif not isinstance(record, dict) or not isinstance(record.get("text"), str):
                problem = "record.text missing"
        if problem:
            self.session.malformed(orjson.dumps(item).decode()[:100_000], error=problem, code="unexpected_shape")
            return None
        moments = [m for m in (_moment(record.get("createdAt")), _moment(item.get("indexedAt"))) if m is not None]
        if not moments:
            self.session.malformed(orjson.dumps(item).decode()[:100_000], error="no createdAt nor indexedAt",
                                   code="invalid_datetime")
            return None
        metrics = {name: item[key] for name, key in (("likes", "likeCount"), ("reposts", "repostCount"),
                                                     ("replies", "replyCount"), ("quotes", "quoteCount"))
                   if isinstance(item.get(key), int) and not isinstance(item.get(key), bool)}
        # A post can claim any createdAt; the index saw it no later than indexedAt (Bluesky's own sortAt).
        return self._post(uri=item["uri"], cid=item["cid"], did=author["did"], handle=str(author.get("handle") or ""),
                          name=str(author.get("displayName") or ""), record=record, posted_at=min(moments),
                          kind=kind, metrics=metrics)

    def _addressed(self, did: str, record: dict[str, Any]) -> bool:
        """A post to the store's account: an answer in its threads, a quote of it, or a mention of it."""
        own = self.own_did
        if not own or did == own:
            return False
        prefix = f"at://{own}/"
        reply = record.get("reply") if isinstance(record.get("reply"), dict) else {}
        for part in ("parent", "root"):
            ref = reply.get(part)
            if isinstance(ref, dict) and str(ref.get("uri") or "").startswith(prefix):
                return True
        embed = record.get("embed") if isinstance(record.get("embed"), dict) else {}
        quoted = embed.get("record") if isinstance(embed.get("record"), dict) else {}
        if str(quoted.get("uri") or "").startswith(prefix):
            return True
        for facet in record.get("facets") or []:
            for feature in (facet.get("features") or []) if isinstance(facet, dict) else []:
                if isinstance(feature, dict) and feature.get("did") == own:
                    return True
        return False

    def _enrich(self, posts: Sequence[Post]) -> None:
        """Followers (reach), handle and name of the authors of the posts that will be kept."""
        if not self.profiles or not self.can_login:
            return
        matcher = matcher_cached(store_id=self.store_id)
        kept = [p for p in posts if p.kind != "post" or matcher.mentions(p.text)]
        wanted = sorted({p.author_id for p in kept} - set(self._profiles))
        for start in range(0, len(wanted), PROFILE_BATCH):
            content = self._query("app.bsky.actor.getProfiles",
                                  models.AppBskyActorGetProfiles.Params(actors=wanted[start:start + PROFILE_BATCH]))
            for profile in (content or {}).get("profiles") or []:
                if isinstance(profile, dict) and isinstance(profile.get("did"), str):
                    self._profiles[profile["did"]] = profile
        for post in kept:
            profile = self._profiles.get(post.author_id)
            if profile is None:
                continue
            followers = profile.get("followersCount")
            if isinstance(followers, int) and not isinstance(followers, bool) and followers >= 0:
                post.author_followers = followers
            handle = profile.get("handle")
            if isinstance(handle, str) and handle and handle != "handle.invalid":
                post.author_handle = handle
                post.url = f"https://bsky.app/profile/{handle}/post/{post_uri_parts(post.external_id)[1]}"
            if not post.author_name and isinstance(profile.get("displayName"), str):
                post.author_name = profile["displayName"]

    # --- polls: search and notifications ---------------------------------------------------------

    def poll(self) -> None:
        if not self.polls:
            return
        # Notifications first: a post both addressed to the store and found by a search is a mention.
        if self.mentions:
            self._notifications()
        for term in self.search_terms:
            self._search(term)
        searched = self.cursor.get("search") or {}
        self.cursor["search"] = {term: searched[term] for term in self.search_terms if term in searched}
        self.cursor["polled_at"] = _iso(timezone.now())
        self.session.emit([], dict(self.cursor))

    def _search(self, term: str) -> None:
        state = self.cursor.setdefault("search", {})
        since = _moment(state.get(term)) or timezone.now() - FIRST_LOOKBACK
        posts: list[Post] = []
        newest = since
        page: str | None = None
        for _ in range(MAX_PAGES):
            params = models.AppBskyFeedSearchPosts.Params(q=term, sort="latest", since=_iso(since - SEARCH_OVERLAP),
                                                          limit=SEARCH_LIMIT, cursor=page)
            content = self._query("app.bsky.feed.searchPosts", params)
            if content is None:
                break
            items = content.get("posts")
            if not isinstance(items, list):
                self.session.malformed(orjson.dumps(content).decode()[:100_000], error="searchPosts without posts",
                                       code="unexpected_shape")
                break
            for item in items:
                post = self._post_from_view(item, kind="post")
                if post is None:
                    continue
                newest = max(newest, post.posted_at)
                if post.author_id == self.own_did:
                    continue  # the store's own posts (our replies) are not mentions of it
                if self._addressed(post.author_id, item["record"]):
                    post.kind = "mention"
                posts.append(post)
            page = content.get("cursor") if isinstance(content.get("cursor"), str) else None
            if not items or not page:
                break
        else:
            log.warning("bluesky search has more than it reads per poll", extra={
                "source_id": self.session.source_id, "term": term, "pages": MAX_PAGES})
        self._enrich(posts)
        state[term] = _iso(newest)
        self.session.emit(posts, dict(self.cursor), newest_at=newest if posts else None)

    def _notifications(self) -> None:
        seen = _moment(self.cursor.get("notifications_at")) or timezone.now() - FIRST_LOOKBACK
        floor = seen - NOTIFICATION_OVERLAP
        posts: list[Post] = []
        newest = seen
        page: str | None = None
        for _ in range(MAX_PAGES):
            params = models.AppBskyNotificationListNotifications.Params(reasons=list(MENTION_REASONS),
                                                                        limit=NOTIFICATION_LIMIT, cursor=page)
            content = self._query("app.bsky.notification.listNotifications", params)
            if content is None:
                break
            items = content.get("notifications")
            if not isinstance(items, list):
                self.session.malformed(orjson.dumps(content).decode()[:100_000],
                                       error="listNotifications without notifications", code="unexpected_shape")
                break
            older = False
            for item in items:
                indexed = _moment(item.get("indexedAt")) if isinstance(item, dict) else None
                if indexed is not None and indexed < floor:
                    older = True  # newest first: everything after this was read by an earlier poll
                    continue
                if isinstance(item, dict) and item.get("reason") not in MENTION_REASONS:
                    continue  # a server that ignores `reasons`: likes and follows are not conversations
                post = self._post_from_view(item, kind="mention")
                if post is not None:
                    posts.append(post)
                    newest = max(newest, indexed or post.posted_at)
            page = content.get("cursor") if isinstance(content.get("cursor"), str) else None
            if older or not items or not page:
                break
        self._enrich(posts)
        self.cursor["notifications_at"] = _iso(newest)
        self.session.emit(posts, dict(self.cursor), newest_at=newest if posts else None)

    def _poll_due_in(self) -> float:
        if not self.polls:
            return float("inf")
        polled = _moment(self.cursor.get("polled_at"))
        if polled is None:
            return 0.0
        return self.poll_seconds - (timezone.now() - polled).total_seconds()

    # --- the firehose --------------------------------------------------------------------------

    def _subscribe_url(self) -> str:
        params = [("wantedCollections", POST_COLLECTION), ("compress", "false")]
        if self.time_us > 0:
            params.append(("cursor", str(max(self.time_us - CURSOR_REWIND_US, 0))))
        separator = "&" if "?" in self.jetstream_url else "?"
        return f"{self.jetstream_url}{separator}{urlencode(params)}"

    def _connect(self, stack: ExitStack) -> ClientConnection:
        url = self._subscribe_url()
        try:
            return stack.enter_context(connect(url, open_timeout=self.timeout, close_timeout=2,
                                               max_size=MAX_EVENT_BYTES, user_agent_header="Tertulia listening"))
        except InvalidURI as exc:
            raise ConnectorError(f"jetstream_url is not a WebSocket URL: {exc}", code="misconfigured",
                                 transient=False) from None
        except (InvalidHandshake, OSError, TimeoutError) as exc:
            raise ConnectorError(f"Jetstream did not accept the subscription ({self.jetstream_url}): {exc}",
                                 code="stream_unavailable") from None

    def stream(self) -> None:
        if self.can_login and not self.own_did:
            self._client()  # learn the account's DID: posts addressed to it are kept whatever they say
        next_poll = time.monotonic() + max(self._poll_due_in(), 0.0)
        if self.polls and next_poll <= time.monotonic():
            self.poll()
            next_poll = time.monotonic() + self.poll_seconds
        with ExitStack() as stack:
            websocket = self._connect(stack)
            while not self.session.should_stop():
                try:
                    raw = websocket.recv(timeout=RECV_SECONDS)
                except TimeoutError:
                    raw = None
                except ConnectionClosedOK:
                    # The server went away politely (a restart): resume from the cursor in a moment.
                    self._flush(force=True)
                    self.session.next_run_in(RECONNECT_SECONDS)
                    return
                except ConnectionClosedError as exc:
                    self._flush(force=True)
                    raise ConnectorError(f"The Jetstream connection broke: {exc}", code="stream_closed") from None
                if raw is not None:
                    self._on_event(raw)
                self._flush()
                self.session.heartbeat()
                if self.polls and time.monotonic() >= next_poll:
                    self._flush(force=True)
                    self.poll()
                    next_poll = time.monotonic() + self.poll_seconds
            self._flush(force=True)

    def _on_event(self, raw: str | bytes) -> None:
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self.session.malformed(raw, error=f"not JSON: {exc}", code="invalid_json")
            return
        if not isinstance(event, dict) or not isinstance(event.get("time_us"), int) \
                or isinstance(event.get("time_us"), bool) or not isinstance(event.get("did"), str) \
                or not isinstance(event.get("kind"), str):
            self.session.malformed(raw, error="a Jetstream event has did, time_us and kind", code="unexpected_shape")
            return
        self.time_us = max(self.time_us, event["time_us"])
        if event["kind"] != "commit":
            return  # identity and account events: nothing said
        commit = event.get("commit")
        if not isinstance(commit, dict) or not isinstance(commit.get("collection"), str) \
                or not isinstance(commit.get("operation"), str):
            self.session.malformed(raw, error="a commit event has commit.collection and commit.operation",
                                   code="unexpected_shape")
            return
        if commit["collection"] != POST_COLLECTION or commit["operation"] != "create":
            return  # likes, follows, deletes, edits, other lexicons
        record, rkey, cid = commit.get("record"), commit.get("rkey"), commit.get("cid")
        if not isinstance(record, dict) or not isinstance(record.get("text"), str) or not isinstance(rkey, str) \
                or not rkey or not isinstance(cid, str) or not cid:
            self.session.malformed(raw, error="a post create has rkey, cid and record.text", code="unexpected_shape")
            return
        created = _moment(record.get("createdAt"))
        if created is None:
            self.session.malformed(raw, error="record.createdAt is not an ISO 8601 date and time",
                                   code="invalid_datetime")
            return
        did = event["did"]
        if did == self.own_did:
            return  # the store's own posts (our replies) are not mentions of it
        addressed = self._addressed(did, record)
        if not addressed and not matcher_cached(store_id=self.store_id).mentions(record["text"]):
            return
        uri = f"at://{did}/{POST_COLLECTION}/{rkey}"
        if post_uri_parts(uri) is None:
            self.session.malformed(raw, error="rkey is not a record key", code="unexpected_shape")
            return
        self.pending.append(self._post(uri=uri, cid=cid, did=did, handle="", name="", record=record,
                                       posted_at=min(created, _from_micros(event["time_us"])),
                                       kind="mention" if addressed else "post"))

    def _flush(self, *, force: bool = False) -> None:
        """Hand over the kept posts with the cursor, in small batches (short transactions)."""
        waited = time.monotonic() - self.last_emit
        if self.pending:
            if not force and len(self.pending) < BATCH_POSTS and waited < FLUSH_SECONDS:
                return
        elif self.time_us == self.emitted_time_us or (not force and waited < CURSOR_SECONDS):
            return
        posts, self.pending = self.pending, []
        self._enrich(posts)
        if self.time_us:
            self.cursor["jetstream_time_us"] = self.time_us
        self.session.emit(posts, dict(self.cursor), newest_at=_from_micros(self.time_us) if self.time_us else None)
        self.emitted_time_us = self.time_us
        self.last_emit = time.monotonic()


def _connector_error(exc: AtProtocolError, nsid: str) -> ConnectorError:
    """The SDK's exceptions as the connector port's, with Bluesky's retry information."""
    info = error_info(exc)
    status = info["http_status"]
    text = f"{nsid}: {status or ''} {info['error']} {info['message']}".replace("  ", " ").strip()
    if isinstance(exc, RateLimitExceededError):
        wait = exc.retry_after
        if wait is None and exc.reset_at is not None:
            wait = (exc.reset_at - datetime.now(UTC)).total_seconds()
        return RateLimited(f"Bluesky rate limit: {text}", retry_after=max(float(wait or SPEC.rate_window), 1.0))
    if isinstance(exc, UnauthorizedError) or info["error"] in TOKEN_ERRORS:
        return AuthFailed(f"Bluesky refused the session: {text}")
    if isinstance(exc, NetworkError) and status in (None, 502):
        return ConnectorError(f"Bluesky could not be reached: {text or exc!r}", code="network_error")
    if isinstance(status, int) and (status >= 500 or status == 408):
        return ConnectorError(f"Bluesky is unavailable: {text}", code="provider_unavailable")
    if status in (404, 501):
        return ConnectorError(f"{nsid} is not served at the configured service_url: {text}", code="misconfigured",
                              transient=False)
    return ConnectorError(f"Bluesky refused the request: {text}", code="bad_request", transient=False)
