"""The X (Twitter API v2) listening connector: recent search, mentions of the store's account and the filtered
stream, through tweepy; and the builder of the adapter that answers on X.

A source takes any of three feeds:

- `search_query`: recent search (GET /2/tweets/search/recent), polled every `poll_seconds`;
- `mentions: true`: the mentions timeline of the store's account (GET /2/users/:id/mentions; `user_id`,
  or resolved once through GET /2/users/me with the user-context credentials); heard as kind "mention";
- `stream_rules`: the filtered stream. Each session syncs the source's rules (added and deleted under the
  tag "tertulia:<store>:<source key>", so another app's rules on the same X app are never touched), then
  catches up with a recent search of the rules together from the cursor (the stream has no replay at X's
  self-serve tiers: what was said while nobody listened is found that way, with no gap), then reads the
  stream until the session ends, storing what it hears in small batches, and polls the other feeds
  between lines when they are due.

Cursor: per feed a window `{"since_id", "seen", "pending", "query"}`. Searches ask for ids above `since_id`,
which trails the newest id heard by `overlap_seconds` (15 s by default) of X's snowflake time, because X
indexes tweets and delivers the stream slightly out of order; the ids heard above it are in `seen`, so
the overlap costs no duplicate. A search that needs several pages keeps its `next_token` in `pending`
(stored with each page's posts), so a session that ends half-way resumes on the next page; `since_id`
moves on only once every page is read. The first session of a feed reads one page (the present), not the
last seven days.

Rate limits: X's limits are per endpoint and per 15 minutes (app-only Bearer: recent search 450, mentions
450, stream connections 50, rule changes 100; posting 100 per user). The source's budget (SPEC) is 300
requests per 15 minutes, under the smallest limit its polling touches, and the `rate_limit` setting
lowers it for smaller tiers (X's Basic tier has allowed as few as 60 recent searches per 15 minutes: then
set `rate_limit` to 60 or less and `poll_seconds` to 30 or more; the developer console shows the app's
own table). X's x-rate-limit-remaining/-reset headers are honoured as well, and a 429 waits until
x-rate-limit-reset.

Errors: 429 -> RateLimited (until x-rate-limit-reset; a refused stream connection waits at least a
minute), 401/403 -> AuthFailed, 5xx and the network -> transient, an invalid query or rule ->
misconfigured. Pure retweets and the store's own tweets are skipped. Unreadable tweets and stream lines
are kept with session.malformed and the rest carries on.
"""

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import requests
import tweepy

from tertulia.channels.adapters.x import (
    DEFAULT_API_BASE_URL,
    DEFAULT_TIMEOUT,
    XHost,
    XReplyAdapter,
    api_detail,
    reset_at,
    response_json,
    user_context,
    x_client,
    x_streaming_client,
)
from tertulia.core.errors import ErrorDetail
from tertulia.listening.connectors.base import (
    AuthFailed,
    ConnectorError,
    Post,
    RateLimited,
    Session,
    SourceSpec,
)

log = logging.getLogger("tertulia.listening.x")

SPEC = SourceSpec(
    settings={"api_base_url": str, "search_query": str, "stream_rules": list, "mentions": bool, "user_id": str,
              "poll_seconds": (int, float), "rate_limit": int, "max_results": int, "overlap_seconds": (int, float),
              "timeout": (int, float)},
    secrets=frozenset({"bearer_token", "consumer_key", "consumer_secret", "access_token", "access_token_secret",
                       "user_access_token"}),
    required_secrets=frozenset({"bearer_token"}),
    rate_limit=300, rate_window=900.0, poll_seconds=60.0, min_poll_seconds=15.0,
    # A stream source reads until the session ends; a polling one says when its next poll is due.
    streaming=True,
)
NETWORK = "x"
TWITTER_EPOCH_MS = 1288834974657
TWEET_FIELDS = ["author_id", "conversation_id", "created_at", "entities", "in_reply_to_user_id", "lang", "note_tweet",
                "public_metrics", "referenced_tweets"]
EXPANSIONS = ["author_id"]
USER_FIELDS = ["name", "public_metrics", "username"]
DEFAULT_MAX_RESULTS = 100
DEFAULT_OVERLAP_SECONDS = 15.0
MAX_PAGES = 10  # per feed and read: 1,000 tweets; the rest comes in the next session, a second later
CATCH_UP_ROUNDS = 3  # a stream session pages through at most 3,000 missed tweets before it connects
SEEN_MAX = 2000
STREAM_BATCH = 25
STREAM_FLUSH_SECONDS = 1.0
STREAM_RETRY_AFTER = 60.0  # X: back off at least a minute after a refused stream connection
MAX_RULES = 25
MAX_QUERY = 512
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T")


# --- snowflake ids ----------------------------------------------------------------------------------


def snowflake_time(tweet_id: int) -> datetime:
    return datetime.fromtimestamp(((int(tweet_id) >> 22) + TWITTER_EPOCH_MS) / 1000, tz=UTC)


def snowflake_at(moment: datetime) -> int:
    return max(int(moment.timestamp() * 1000) - TWITTER_EPOCH_MS, 0) << 22


# --- the cursor of one feed -----------------------------------------------------------------------


@dataclass
class Window:
    """Where one feed stands: ids above `since_id` not in `seen` are still to hear; `pending` is a search
    being paged (its own since_id, next token and the newest id its first page had)."""

    since_id: int | None = None
    seen: list[int] = field(default_factory=list)
    pending: dict[str, Any] | None = None
    query: str = ""

    @classmethod
    def load(cls, data: Any, *, query: str) -> "Window":
        window = cls(query=query)
        if not isinstance(data, dict):
            return window
        since = str(data.get("since_id") or "")
        window.since_id = int(since) if since.isdigit() else None
        window.seen = [int(i) for i in data.get("seen") or [] if str(i).isdigit()]
        pending = data.get("pending")
        if isinstance(pending, dict) and pending.get("token") and data.get("query", "") == query:
            window.pending = pending  # a next_token belongs to the query it came from
        return window

    def dump(self) -> dict[str, Any]:
        return {"since_id": str(self.since_id) if self.since_id is not None else "",
                "seen": [str(i) for i in self.seen], "pending": self.pending, "query": self.query}

    @property
    def first(self) -> bool:
        return self.since_id is None and self.pending is None

    def request(self) -> tuple[str | None, str | None]:
        """(since_id, next token) for the next page."""
        if self.pending:
            return self.pending.get("since_id") or None, self.pending["token"]
        return (str(self.since_id) if self.since_id is not None else None), None

    def fresh(self, ids: list[int]) -> set[int]:
        seen = set(self.seen)
        new = {i for i in ids if i not in seen}
        self.seen.extend(sorted(new))
        return new

    def page_read(self, *, since: str | None, next_token: str | None, newest: int | None, now: datetime,
                  overlap: float) -> None:
        if self.first:
            # The first page is the present: start from it, not from seven days back.
            self.since_id = snowflake_at(now - timedelta(seconds=overlap)) if newest is None else None
            self.advance(newest, overlap)
            return
        pending_newest = int(self.pending["newest_id"]) if self.pending and self.pending.get("newest_id") else None
        newest = max((i for i in (newest, pending_newest) if i is not None), default=None)
        if next_token:
            self.pending = {"token": next_token, "since_id": since or "",
                            "newest_id": str(newest) if newest is not None else ""}
            return
        self.pending = None
        self.advance(newest, overlap)

    def advance(self, newest: int | None, overlap: float) -> None:
        """Everything up to `newest` is heard: trail it by `overlap` seconds and forget older seen ids."""
        if newest is not None:
            floor = snowflake_at(snowflake_time(newest) - timedelta(seconds=overlap))
            if self.since_id is None or floor > self.since_id:
                self.since_id = floor
        if self.since_id is not None:
            self.seen = sorted(i for i in set(self.seen) if i > self.since_id)
        if len(self.seen) > SEEN_MAX:
            dropped, self.seen = self.seen[:-SEEN_MAX], self.seen[-SEEN_MAX:]
            self.since_id = max(self.since_id or 0, dropped[-1])

    def reset(self) -> None:
        self.since_id, self.pending, self.seen = None, None, []


# --- tweets as posts --------------------------------------------------------------------------------


class Skip(Exception):  # noqa: N818 - not an error: a tweet the store does not listen to
    pass


def _parse_time(value: Any, tweet_id: int) -> datetime:
    if value is None:
        return snowflake_time(tweet_id)  # the id says when, to the millisecond
    if not isinstance(value, str) or not _ISO.match(value):
        raise ValueError(f"created_at {value!r} is not an ISO 8601 time")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"created_at {value!r} has no time zone")
    return moment


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def users_by_id(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    includes = body.get("includes")
    users = includes.get("users") if isinstance(includes, dict) else None
    return {str(u["id"]): u for u in users or [] if isinstance(u, dict) and u.get("id")}


def tweet_post(tweet: Any, users: dict[str, dict[str, Any]], *, kind: str = "post", me_id: str = "") -> Post:
    """One X v2 tweet object (with its author from includes.users) as a Post; ValueError when unreadable,
    Skip for a pure retweet or the store's own tweet."""
    if not isinstance(tweet, dict):
        raise ValueError("a tweet is an object")
    tweet_id, text = tweet.get("id"), tweet.get("text")
    if not isinstance(tweet_id, str) or not tweet_id.isdigit():
        raise ValueError(f"tweet id {tweet_id!r} is not a string of digits")
    if not isinstance(text, str):
        raise ValueError("a tweet without text")
    note = tweet.get("note_tweet")
    if isinstance(note, dict) and isinstance(note.get("text"), str) and note["text"]:
        text = note["text"]  # a long post: `text` is cut at 280 characters
    posted_at = _parse_time(tweet.get("created_at"), int(tweet_id))
    author_id = str(tweet.get("author_id") or "")
    if me_id and author_id == me_id:
        raise Skip("the store's own tweet")
    references = tweet.get("referenced_tweets") or []
    if not isinstance(references, list):
        raise ValueError("referenced_tweets is not a list")
    replied_to = ""
    for reference in references:
        if not isinstance(reference, dict):
            raise ValueError("a referenced tweet is not an object")
        if reference.get("type") == "retweeted":
            raise Skip("a retweet: the words are someone else's")
        if reference.get("type") == "replied_to" and str(reference.get("id") or "").isdigit():
            replied_to = str(reference["id"])
    user = users.get(author_id) or {}
    username = str(user.get("username") or "")
    user_metrics = user.get("public_metrics") if isinstance(user.get("public_metrics"), dict) else {}
    metrics_in = tweet.get("public_metrics") if isinstance(tweet.get("public_metrics"), dict) else {}
    metrics = {name: value for name, source in (("likes", "like_count"), ("reposts", "retweet_count"),
                                                ("replies", "reply_count"), ("quotes", "quote_count"))
               if (value := _count(metrics_in.get(source))) is not None}
    if kind == "post" and me_id:
        entities = tweet.get("entities") if isinstance(tweet.get("entities"), dict) else {}
        named = {str(m.get("id")) for m in entities.get("mentions") or [] if isinstance(m, dict)}
        if str(tweet.get("in_reply_to_user_id") or "") == me_id or me_id in named:
            kind = "mention"  # addressed to the store's account, however it was heard
    conversation = str(tweet.get("conversation_id") or "")
    lang = str(tweet.get("lang") or "")
    return Post(
        network=NETWORK, external_id=tweet_id, text=text, posted_at=posted_at, kind=kind,
        url=f"https://x.com/{username}/status/{tweet_id}" if username else f"https://x.com/i/web/status/{tweet_id}",
        author_id=author_id, author_handle=username, author_name=str(user.get("name") or ""),
        author_followers=_count(user_metrics.get("followers_count")),
        language="" if lang in ("und", "qme", "qht", "zxx") else lang,
        in_reply_to=replied_to, thread_root=conversation if conversation.isdigit() else "", metrics=metrics,
    )


# --- one session -------------------------------------------------------------------------------------


class _BadRequest(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _rate_limited(response: requests.Response | None, *, at_least: float = 1.0, what: str = "X") -> RateLimited:
    reset = reset_at(response)
    wait = (reset - datetime.now(UTC)).total_seconds() if reset else SPEC.rate_window
    return RateLimited(f"{what}: 429 Too Many Requests", retry_after=max(wait, at_least))


def _http_error(exc: tweepy.HTTPException, what: str) -> ConnectorError:
    status = exc.response.status_code
    detail = api_detail(exc)
    if isinstance(exc, tweepy.TooManyRequests):
        return _rate_limited(exc.response, what=what)
    if status in (401, 403):
        return AuthFailed(f"{what}: X {status}: {detail}")
    if status >= 500:
        return ConnectorError(f"{what}: X {status}: {detail}", code="x_unavailable")
    if status == 404:
        return ConnectorError(f"{what}: X 404: {detail}", code="misconfigured", transient=False)
    return ConnectorError(f"{what}: X {status}: {detail}", code="x_error")


class _Stream(tweepy.StreamingClient):
    """tweepy's stream with its callbacks sent to the session; every error ends the connection at once
    (the runner decides when to come back, never a sleep in here)."""

    listening: "_Listening"
    connected = closed = connection_error = False
    status: int | None = None
    failure: BaseException | None = None

    def on_connect(self) -> None:
        self.connected = True

    def on_data(self, raw_data) -> None:  # noqa: ANN001 - tweepy's signature
        self.listening.stream_line(raw_data)

    def on_keep_alive(self) -> None:
        self.listening.stream_idle()

    def on_request_error(self, status_code) -> None:  # noqa: ANN001
        self.status = int(status_code)
        self.disconnect()

    def on_connection_error(self) -> None:
        self.connection_error = True
        self.disconnect()

    def on_closed(self, response) -> None:  # noqa: ANN001
        self.closed = True
        self.disconnect()

    def on_exception(self, exception) -> None:  # noqa: ANN001
        self.failure = exception

    def on_disconnect(self) -> None:
        pass


class _Listening:
    """One session of one X source."""

    def __init__(self, config, session: Session) -> None:
        self.session = session
        settings = session.settings
        self.secrets = session.secrets
        self.base_url = str(settings.get("api_base_url") or DEFAULT_API_BASE_URL).rstrip("/")
        self.timeout = float(settings.get("timeout") or DEFAULT_TIMEOUT)
        self.max_results = int(settings.get("max_results") or DEFAULT_MAX_RESULTS)
        overlap = settings.get("overlap_seconds")
        self.overlap = float(DEFAULT_OVERLAP_SECONDS if overlap is None else overlap)
        self.poll_seconds = float(settings.get("poll_seconds") or SPEC.poll_seconds)
        self.query = str(settings.get("search_query") or "").strip()
        self.rules = [r.strip() for r in settings.get("stream_rules") or [] if isinstance(r, str) and r.strip()]
        self.stream_query = catch_up_query(self.rules)
        self.mentions = bool(settings.get("mentions"))
        self.tag = f"tertulia:{config.store_id}:{config.key}"
        self.cursor = dict(session.cursor)
        me = self.cursor.get("me") if isinstance(self.cursor.get("me"), dict) else {}
        self.me_id = str(settings.get("user_id") or me.get("id") or "")
        self.app, self.app_host = x_client(api_base_url=self.base_url, secrets=self.secrets, timeout=self.timeout)
        self.windows: dict[str, Window] = {}
        self.stream: _Stream | None = None
        self.stream_host: XHost | None = None
        self.rule_ids: set[str] = set()
        self.batch: list[Post] = []
        self.batch_started = 0.0
        self.last_poll = 0.0

    # --- plumbing --------------------------------------------------------------------------------

    def window(self, name: str) -> Window:
        if name not in self.windows:
            query = {"search": self.query, "stream": self.stream_query}.get(name, self.me_id)
            self.windows[name] = Window.load(self.cursor.get(name), query=query)
        return self.windows[name]

    def cursor_now(self) -> dict[str, Any]:
        cursor = dict(self.cursor)
        for name, window in self.windows.items():
            cursor[name] = window.dump()
        return cursor

    def call(self, request, *, what: str) -> requests.Response:
        self.session.throttle()
        try:
            return request()
        except tweepy.BadRequest as exc:
            raise _BadRequest(api_detail(exc)) from None
        except tweepy.HTTPException as exc:
            raise _http_error(exc, what) from None
        except requests.RequestException as exc:
            raise ConnectorError(f"{what}: {exc}", code="network_error") from None

    def body(self, response: requests.Response, *, what: str) -> dict[str, Any]:
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            self.session.malformed(response.content, error=f"{what}: not JSON: {exc}", code="invalid_json")
            raise ConnectorError(f"{what}: X answered with something that is not JSON", code="unexpected_response") \
                from None
        if not isinstance(body, dict):
            self.session.malformed(response.content, error=f"{what}: not a JSON object", code="unexpected_shape")
            raise ConnectorError(f"{what}: X answered with something that is not an object", code="unexpected_response")
        return body

    def limits(self, response: requests.Response) -> None:
        remaining = response.headers.get("x-rate-limit-remaining")
        if remaining is not None and remaining.isdigit():
            self.session.rate_limit_seen(remaining=int(remaining), reset_at=reset_at(response))

    # --- the session ------------------------------------------------------------------------------

    def run(self) -> None:
        self.resolve_me()
        if self.rules:
            self.stream_session()
            return
        more = self.poll()
        self.session.next_run_in(1.0 if more else self.poll_seconds)

    def resolve_me(self) -> None:
        """The store's account id: to hear its mentions and skip its own tweets."""
        if self.me_id or not user_context(self.secrets):
            if self.mentions and not self.me_id:
                raise ConnectorError("Mentions need the account's user_id (or user-context credentials).",
                                     code="misconfigured", transient=False)
            return
        client, _host = x_client(api_base_url=self.base_url, secrets=self.secrets, user=True, timeout=self.timeout)
        oauth1 = user_context(self.secrets) == "oauth1"
        try:
            response = self.call(lambda: client.get_me(user_auth=oauth1), what="users/me")
        except _BadRequest as exc:
            raise ConnectorError(f"users/me: {exc.detail}", code="x_error") from None
        data = self.body(response, what="users/me").get("data")
        if not isinstance(data, dict) or not str(data.get("id") or "").isdigit():
            self.session.malformed(response.content, error="users/me without a user id", code="unexpected_shape")
            raise ConnectorError("users/me: no user id", code="unexpected_response")
        self.me_id = str(data["id"])
        self.cursor["me"] = {"id": self.me_id, "username": str(data.get("username") or "")}
        self.windows.pop("mentions", None)

    def poll(self) -> bool:
        """Read the polled feeds; True when pages are left for the next session."""
        self.last_poll = time.monotonic()
        more = False
        if self.query:
            more = self.read("search") or more
        if self.mentions:
            more = self.read("mentions") or more
        return more

    def read(self, name: str) -> bool:
        window = self.window(name)
        kind = "mention" if name == "mentions" else "post"
        what = {"search": "recent search", "stream": "stream catch-up", "mentions": "mentions"}[name]
        for _page in range(MAX_PAGES):
            if self.session.should_stop():
                break
            since, token = window.request()
            try:
                response = self.fetch(name, since=since, token=token, what=what)
            except _BadRequest as exc:
                if not self.recover(window, exc.detail, what=what):
                    raise ConnectorError(f"{what}: X 400: {exc.detail}", code="misconfigured", transient=False) \
                        from None
                continue
            body = self.body(response, what=what)
            posts, ids = self.page_posts(body, kind=kind, what=what)
            meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
            newest = max(ids, default=None)
            if str(meta.get("newest_id") or "").isdigit():
                newest = max(newest or 0, int(meta["newest_id"]))
            next_token = meta.get("next_token") if isinstance(meta.get("next_token"), str) else None
            first = window.first
            new = window.fresh(ids)
            window.page_read(since=since, next_token=next_token, newest=newest, now=datetime.now(UTC),
                             overlap=self.overlap)
            fresh = [p for p in posts if int(p.external_id) in new]
            self.session.emit(fresh, self.cursor_now(), newest_at=max((p.posted_at for p in fresh), default=None))
            self.limits(response)
            if first or window.pending is None:
                return False
        return window.pending is not None

    def recover(self, window: Window, detail: str, *, what: str) -> bool:
        """A 400 the cursor caused: a next token X no longer takes, or a since_id older than recent search's
        seven days. True when the window was put right and the page can be asked again."""
        lowered = detail.lower()
        if window.pending and ("next_token" in lowered or "pagination_token" in lowered):
            log.warning("X refused the saved next token; reading again from since_id", extra={"feed": what})
            window.pending = None  # the ids already heard are in `seen`: no duplicate
            return True
        if "since_id" in lowered and not window.first:
            log.warning("X refused since_id (older than recent search reaches): starting from the present",
                        extra={"feed": what, "since_id": window.since_id})
            window.reset()
            return True
        return False

    def fetch(self, name: str, *, since: str | None, token: str | None, what: str) -> requests.Response:
        params: dict[str, Any] = {"tweet_fields": TWEET_FIELDS, "expansions": EXPANSIONS, "user_fields": USER_FIELDS,
                                  "max_results": self.max_results}
        if since:
            params["since_id"] = since
        if name == "mentions":
            if token:
                params["pagination_token"] = token
            return self.call(lambda: self.app.get_users_mentions(self.me_id, **params), what=what)
        if token:
            params["next_token"] = token
        query = self.query if name == "search" else self.stream_query
        return self.call(lambda: self.app.search_recent_tweets(query, **params), what=what)

    def page_posts(self, body: dict[str, Any], *, kind: str, what: str) -> tuple[list[Post], list[int]]:
        data = body.get("data") or []
        if not isinstance(data, list):
            self.session.malformed(orjson.dumps(body), error=f"{what}: data is not a list", code="unexpected_shape")
            return [], []
        users = users_by_id(body)
        posts, ids = [], []
        for item in data:
            tweet_id = item.get("id") if isinstance(item, dict) else None
            if isinstance(tweet_id, str) and tweet_id.isdigit():
                ids.append(int(tweet_id))
            try:
                posts.append(tweet_post(item, users, kind=kind, me_id=self.me_id))
            except Skip:
                continue
            except ValueError as exc:
                self.session.malformed(orjson.dumps(item), error=f"{what}: {exc}", code="unexpected_shape")
        return posts, ids

    # --- the filtered stream ---------------------------------------------------------------------

    def stream_session(self) -> None:
        self.stream, self.stream_host = x_streaming_client(
            api_base_url=self.base_url, bearer_token=str(self.secrets.get("bearer_token") or ""), stream_class=_Stream,
            timeout=self.timeout)
        self.stream.listening = self
        self.sync_rules()
        # What the rules matched while nobody was connected: the stream itself has no replay.
        for _round in range(CATCH_UP_ROUNDS):
            if not self.read("stream") or self.session.should_stop():
                break
        self.poll()
        if self.session.should_stop():
            return
        self.session.throttle()
        self.stream.filter(tweet_fields=TWEET_FIELDS, expansions=EXPANSIONS, user_fields=USER_FIELDS)
        if self.stream.failure is None:
            self.flush()
        stream = self.stream
        if stream.failure is not None:
            raise stream.failure
        if stream.status is not None:
            response = self.stream_host.last_response
            if stream.status == 429:
                raise _rate_limited(response, at_least=STREAM_RETRY_AFTER, what="filtered stream")
            detail = self.error_detail(response)
            if stream.status in (401, 403):
                raise AuthFailed(f"filtered stream: X {stream.status}: {detail}")
            raise ConnectorError(f"filtered stream: X {stream.status}: {detail}",
                                 code="x_unavailable" if stream.status >= 500 else "x_error")
        if stream.connection_error and not stream.connected:
            raise ConnectorError("filtered stream: could not connect", code="network_error")
        # Otherwise the session's time is up, or X closed the stream: the next session starts at once and its
        # catch-up search covers the moment in between.

    @staticmethod
    def error_detail(response: requests.Response | None) -> str:
        if response is None:
            return "no answer"
        try:
            body = response_json(response)
        except orjson.JSONDecodeError:
            return response.text[:300]
        return str(body.get("detail") or body.get("title") or body)[:500] if isinstance(body, dict) else str(body)

    def sync_rules(self) -> None:
        """Make the rules tagged for this source exactly `stream_rules`; other rules on the app stay as they are."""
        response = self.call(lambda: self.stream.get_rules(), what="stream rules")
        body = self.body(response, what="stream rules")
        rules = [r for r in body.get("data") or [] if isinstance(r, dict) and r.get("id") and isinstance(r.get("value"), str)]
        ours = [r for r in rules if r.get("tag") == self.tag]
        wanted = set(self.rules)
        stale = [str(r["id"]) for r in ours if r["value"] not in wanted]
        have = {r["value"]: str(r["id"]) for r in ours if r["value"] in wanted}
        # The same rule under another tag (another tool on this X app): X refuses a duplicate, and the
        # tweets it matches name that rule's id. Listen to it without owning (or deleting) it.
        others = {r["value"]: str(r["id"]) for r in rules if r.get("tag") != self.tag}
        self.rule_ids = set(have.values()) | {others[v] for v in wanted - set(have) if v in others}
        missing = [v for v in self.rules if v not in have and v not in others]
        if stale:
            response = self.call(lambda: self.stream.delete_rules(stale), what="stream rules")
            log.info("stale stream rules deleted", extra={"source_id": self.session.source_id, "count": len(stale)})
        if missing:
            try:
                response = self.call(lambda: self.stream.add_rules([tweepy.StreamRule(value=v, tag=self.tag)
                                                                    for v in missing]), what="stream rules")
            except _BadRequest as exc:
                raise ConnectorError(f"X refused the stream rules: {exc.detail}", code="misconfigured",
                                     transient=False) from None
            answer = self.body(response, what="stream rules")
            for rule in answer.get("data") or []:
                if isinstance(rule, dict) and rule.get("id"):
                    self.rule_ids.add(str(rule["id"]))
            for error in answer.get("errors") or []:
                if isinstance(error, dict) and error.get("id"):  # DuplicateRule names the rule that exists
                    self.rule_ids.add(str(error["id"]))
        self.limits(response)

    def stream_line(self, raw: bytes) -> None:
        self.session.heartbeat()
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self.session.malformed(raw, error=f"filtered stream: not JSON: {exc}", code="invalid_json")
            return self.after_line()
        if not isinstance(message, dict):
            self.session.malformed(raw, error="filtered stream: a line that is not an object", code="unexpected_shape")
            return self.after_line()
        data = message.get("data")
        if data is None:
            errors = message.get("errors")
            if isinstance(errors, list) and errors:
                log.warning("X sent errors on the stream", extra={"source_id": self.session.source_id,
                                                                  "errors": str(errors)[:500]})
                if any(isinstance(e, dict) and "disconnect" in str(e.get("type") or e.get("title") or "")
                       for e in errors):
                    self.stream.disconnect()  # X is closing the connection: end the session, the next catches up
                return self.after_line()
            self.session.malformed(raw, error="filtered stream: neither data nor errors", code="unexpected_shape")
            return self.after_line()
        matched = message.get("matching_rules")
        if isinstance(matched, list) and matched and self.rule_ids and not any(
                isinstance(r, dict) and str(r.get("id")) in self.rule_ids for r in matched):
            return self.after_line()  # matched only another tool's rules on this X app
        try:
            post = tweet_post(data, users_by_id(message), me_id=self.me_id)
        except Skip:
            post = None
        except ValueError as exc:
            self.session.malformed(raw, error=f"filtered stream: {exc}", code="unexpected_shape")
            return self.after_line()
        window = self.window("stream")
        if window.fresh([int(data["id"])]) and post is not None:
            if not self.batch:
                self.batch_started = time.monotonic()
            self.batch.append(post)
        return self.after_line()

    def stream_idle(self) -> None:
        self.session.heartbeat()
        self.flush()
        self.after_line()

    def after_line(self) -> None:
        if self.batch and (len(self.batch) >= STREAM_BATCH or time.monotonic() - self.batch_started >= STREAM_FLUSH_SECONDS):
            self.flush()
        if (self.query or self.mentions) and time.monotonic() - self.last_poll >= self.poll_seconds:
            self.flush()
            self.poll()
        if self.session.should_stop():
            self.stream.disconnect()

    def flush(self) -> None:
        window = self.window("stream")
        window.advance(max(window.seen, default=None), self.overlap)
        batch, self.batch = self.batch, []
        if batch or self.windows["stream"].dump() != (self.cursor.get("stream") or {}):
            self.session.emit(batch, self.cursor_now(), newest_at=max((p.posted_at for p in batch), default=None))
            self.cursor = self.cursor_now()


def catch_up_query(rules: list[str]) -> str:
    """The stream's rules as one recent-search query (the same operators)."""
    rules = [r.strip() for r in rules if r.strip()]
    if len(rules) <= 1:
        return rules[0] if rules else ""
    return " OR ".join(f"({r})" for r in rules)


class XConnector:
    network = NETWORK

    def __init__(self, config) -> None:
        self.config = config

    def run(self, session: Session) -> None:
        _Listening(self.config, session).run()


def build(config) -> XConnector:
    return XConnector(config)


def reply_adapter(config) -> XReplyAdapter:
    """Replies go out from the source's account (its user-context credentials)."""
    return XReplyAdapter.from_source(config)


def validate(settings: dict[str, Any], secrets: dict[str, Any]) -> list[ErrorDetail]:
    problems: list[ErrorDetail] = []

    def bad(name: str, code: str, message: str, index: int | None = None) -> None:
        problems.append(ErrorDetail(field=name, code=code, message=message, index=index))

    url = settings.get("api_base_url")
    if url is not None and not re.match(r"^https?://[^/\s]+(/\S*)?$", url):
        bad("settings.api_base_url", "invalid", "An http(s) URL, such as https://api.x.com.")
    query = str(settings.get("search_query") or "")
    rules = settings.get("stream_rules") or []
    if not query.strip() and not rules and not settings.get("mentions"):
        bad("settings", "nothing_to_hear", "Give a search_query, stream_rules or mentions: true.")
    if len(query) > MAX_QUERY:
        bad("settings.search_query", "too_long", f"At most {MAX_QUERY} characters.")
    if rules:
        for index, rule in enumerate(rules):
            if not isinstance(rule, str) or not rule.strip():
                bad("settings.stream_rules", "invalid", "A rule is a non-empty string.", index)
            elif len(rule) > MAX_QUERY:
                bad("settings.stream_rules", "too_long", f"A rule has at most {MAX_QUERY} characters.", index)
        strings = [r.strip() for r in rules if isinstance(r, str) and r.strip()]
        if len(strings) != len(set(strings)):
            bad("settings.stream_rules", "duplicate", "Each rule once.")
        if len(rules) > MAX_RULES:
            bad("settings.stream_rules", "too_many", f"At most {MAX_RULES} rules.")
        elif len(catch_up_query(strings)) > MAX_QUERY:
            bad("settings.stream_rules", "too_long",
                f"Together, as the catch-up search 'rule1 OR rule2...', the rules have at most {MAX_QUERY} characters.")
    for name, low, high in (("max_results", 10, 100), ("rate_limit", 1, 100_000)):
        value = settings.get(name)
        if value is not None and not low <= value <= high:
            bad(f"settings.{name}", "invalid", f"Between {low} and {high}.")
    for name, low, high in (("overlap_seconds", 0, 300), ("timeout", 1, 120)):
        value = settings.get(name)
        if value is not None and not low <= value <= high:
            bad(f"settings.{name}", "invalid", f"Between {low} and {high} seconds.")
    user_id = settings.get("user_id")
    if user_id is not None and user_id != "" and not str(user_id).isdigit():
        bad("settings.user_id", "invalid", "The account's numeric id, as a string.")
    if secrets:
        oauth1 = [k for k in ("consumer_key", "consumer_secret", "access_token", "access_token_secret") if secrets.get(k)]
        if oauth1 and len(oauth1) < 4:
            bad("secrets", "incomplete", "OAuth 1.0a takes consumer_key, consumer_secret, access_token and "
                                         "access_token_secret together.")
        if settings.get("mentions") and not user_id and not user_context(secrets):
            bad("settings.user_id", "required", "Mentions need the account's user_id, or user-context credentials "
                                                "to find it.")
    return problems
