"""A local stand-in for the X API v2: recent search, mentions, the filtered stream and posting, in X's wire format.

Built from X's public API reference (developer.x.com / docs.x.com) and from real responses recorded by tweepy's
test suite (tests/fixtures/social/x/): with no `tweet.fields` a tweet is exactly what X returned there
(`id`, `text`, `edit_history_tweet_ids`), and every other field appears only when asked for, as on X.

What it speaks:

- GET /2/tweets/search/recent (query, since_id, until_id, max_results 10-100, next_token, tweet.fields,
  expansions, user.fields), GET /2/users/:id/mentions (pagination_token, max_results 5-100), GET
  /2/users/:id/tweets and GET /2/users/me: `data`, `includes.users`, `meta{newest_id, oldest_id,
  result_count, next_token}`; newest first; tokens bound to the query they came from.
- The filtered stream: GET/POST /2/tweets/search/stream/rules (add with tags, delete by id, `meta.sent` and
  `meta.summary`, DuplicateRule errors) and GET /2/tweets/search/stream, a chunked HTTP response of one
  JSON object per line (`data`, `includes`, `matching_rules`) with `\\r\\n` keep-alive heartbeats. Tweets
  are delivered only while a client is connected: there is no replay, as at X's self-serve tiers.
- POST /2/tweets (text up to 280 characters, `reply.in_reply_to_tweet_id`): 201 `{"data": {"id", "text"}}`;
  a reply's text starts with the @username it answers, as X writes it; identical text twice is refused
  with X's duplicate-content 403.
- Auth: reads take the app's Bearer token (app-only) or a user context; posting and /2/users/me need a user
  context, OAuth 1.0a (HMAC-SHA1 signature checked over the URL the request was sent to) or an OAuth 2.0
  user token; the stream and its rules take app-only auth only. Errors in X's shapes: problem objects
  `{"title", "detail", "type", "status"}` and `{"errors": [...], "title", "detail", "type"}`.
- Rate limits per endpoint and auth context with X's documented 15-minute defaults, sent as
  `x-rate-limit-limit`, `x-rate-limit-remaining`, `x-rate-limit-reset` (epoch seconds); 429 when spent.

The rule and query language is a working subset: keywords, "exact phrases", #hashtags, @mentions, from:,
to:, lang:, conversation_id:, is:reply, is:retweet, is:quote, has:links, has:mentions, has:hashtags,
negation with -, implicit AND, OR and parentheses (AND binds first, as on X).

Tests and the demo drive it with `add_user`, `add_tweet` (searchable, delivered to open streams whose rules
match, and listed in the mentions of every user it names), `add_raw_stream_line` (anything, even broken
JSON, to every open stream), `stream_end`, `fail` (scripted failures) and `rate_limit`; `posted` keeps what
the store tweeted and `requests` every request seen.
"""

import hmac
import itertools
import json
import queue
import re
import secrets
import threading
import time
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from oauthlib.oauth1.rfc5849 import signature as oauth_signature

from tertulia.listening.sandbox import SandboxHTTPServer

# The stand-in's own made-up credentials (nothing secret: they open nothing but this local server). A source
# pointed at the sandbox takes these as its secrets.
CREDENTIALS = {  # noqa: S105
    "bearer_token": "sandbox-bearer-token", "consumer_key": "sandbox-consumer-key",
    "consumer_secret": "sandbox-consumer-secret", "access_token": "sandbox-access-token",
    "access_token_secret": "sandbox-access-secret", "user_access_token": "sandbox-user-token",
}
TWITTER_EPOCH_MS = 1288834974657  # the zero of X's snowflake ids (2010-11-04T01:42:54.657Z)
MAX_TEXT = 280
STREAM_END = object()

# route -> (limit per app, limit per user, window seconds); None: that auth context is not accepted there.
RATE_LIMITS: dict[str, tuple[int | None, int | None, int]] = {
    "GET /2/tweets/search/recent": (450, 300, 900),
    "GET /2/users/:id/mentions": (450, 180, 900),
    "GET /2/users/:id/tweets": (1500, 900, 900),
    "GET /2/users/me": (None, 75, 900),
    "GET /2/tweets/search/stream": (50, None, 900),
    "GET /2/tweets/search/stream/rules": (450, None, 900),
    "POST /2/tweets/search/stream/rules": (100, None, 900),
    "POST /2/tweets": (None, 100, 900),
}
TWEET_FIELDS = frozenset({
    "attachments", "author_id", "context_annotations", "conversation_id", "created_at", "edit_controls",
    "edit_history_tweet_ids", "entities", "geo", "id", "in_reply_to_user_id", "lang", "note_tweet",
    "possibly_sensitive", "public_metrics", "referenced_tweets", "reply_settings", "source", "text", "withheld",
})
USER_FIELDS = frozenset({
    "created_at", "description", "entities", "id", "location", "name", "pinned_tweet_id", "profile_image_url",
    "protected", "public_metrics", "url", "username", "verified", "verified_type", "withheld",
})
EXPANSIONS = frozenset({"author_id", "in_reply_to_user_id", "referenced_tweets.id", "entities.mentions.username"})
INVALID_REQUEST = "https://api.twitter.com/2/problems/invalid-request"
_WORD = re.compile(r"[#@$]?\w+", re.UNICODE)
_URL = re.compile(r"https?://\S+")


def snowflake_time(tweet_id: int | str) -> datetime:
    """When X made an id: its top bits are milliseconds since X's epoch."""
    return datetime.fromtimestamp(((int(tweet_id) >> 22) + TWITTER_EPOCH_MS) / 1000, tz=UTC)


def snowflake_at(moment: datetime) -> int:
    """The smallest id X could give at `moment` (to search "since then")."""
    return max(int(moment.timestamp() * 1000) - TWITTER_EPOCH_MS, 0) << 22


def x_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def problem(status: int, detail: str = "", *, title: str = "", type_: str = "about:blank") -> dict[str, Any]:
    phrase = HTTPStatus(status).phrase
    return {"title": title or phrase, "detail": detail or phrase, "type": type_, "status": status}


def invalid_request(parameter: str, value: str, message: str) -> dict[str, Any]:
    return {"errors": [{"parameters": {parameter: [value]}, "message": message}], "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.", "type": INVALID_REQUEST}


# --- the rule and query language --------------------------------------------------------------


class QueryError(ValueError):
    pass


_OPERATORS = frozenset({"from", "to", "lang", "conversation_id", "is", "has"})
_TOKEN = re.compile(r'\s*(?:(?P<open>\()|(?P<close>\))|(?P<phrase>-?"[^"]*")|(?P<term>[^\s()"]+))')


def _tokens(query: str) -> list[str]:
    out, position = [], 0
    query = query.strip()
    while position < len(query):
        match = _TOKEN.match(query, position)
        if match is None or match.end() == position:
            raise QueryError(f"Unexpected character at position {position}")
        out.append(match.group().strip())
        position = match.end()
    return out


def query_parse(query: str):
    """A query or rule as a predicate over the sandbox's tweet records; QueryError when it is not valid."""
    if not isinstance(query, str) or not query.strip():
        raise QueryError("The query is empty.")
    tokens = _tokens(query)
    position = 0

    def peek():
        return tokens[position] if position < len(tokens) else None

    def take():
        nonlocal position
        position += 1
        return tokens[position - 1]

    def parse_or():
        parts = [parse_and()]
        while peek() == "OR":
            take()
            parts.append(parse_and())
        return parts[0] if len(parts) == 1 else (lambda t, ps=parts: any(p(t) for p in ps))

    def parse_and():
        parts = []
        while peek() not in (None, ")", "OR"):
            parts.append(parse_unary())
        if not parts:
            raise QueryError("An operator or a group is missing a term.")
        return parts[0] if len(parts) == 1 else (lambda t, ps=parts: all(p(t) for p in ps))

    def parse_group():
        inner = parse_or()
        if peek() != ")":
            raise QueryError("A group is not closed.")
        take()
        return inner

    def parse_unary():
        piece = take()
        if piece == "-":
            if peek() != "(":
                raise QueryError("Negate a term or a group written right after '-'.")
            take()
            group = parse_group()
            return lambda t: not group(t)
        if piece == "(":
            return parse_group()
        if piece == ")":
            raise QueryError("A group is closed that was not opened.")
        if piece.startswith("-"):
            inner = _atom(piece[1:])
            return lambda t: not inner(t)
        return _atom(piece)

    predicate = parse_or()
    if position != len(tokens):
        raise QueryError(f"Unexpected '{tokens[position]}'.")
    return predicate


def _atom(piece: str):
    if piece.startswith('"'):
        words = [w.lower() for w in _WORD.findall(piece.strip('"'))]
        if not words:
            raise QueryError("An empty phrase.")
        phrase = " ".join(w.lstrip("#@$") for w in words)
        return lambda t: f" {phrase} " in f" {t['_plain']} "
    if ":" in piece and not piece.startswith(("http:", "https:")):
        name, _sep, value = piece.partition(":")
        if name not in _OPERATORS or not value:
            raise QueryError(f"Reference to invalid operator '{name}'.")
        value = value.lower()
        if name == "from":
            return lambda t: t["_author"]["username"].lower() == value.lstrip("@") or t["_author"]["id"] == value
        if name == "to":
            return lambda t: (t["_to"] or "").lower() == value.lstrip("@")
        if name == "lang":
            return lambda t: (t.get("lang") or "") == value
        if name == "conversation_id":
            return lambda t: t["conversation_id"] == value
        if name == "is":
            checks = {"reply": lambda t: t["_replied_to"] is not None, "retweet": lambda t: t["_retweet_of"] is not None,
                      "quote": lambda t: False}
        else:
            checks = {"links": lambda t: bool(t["entities"].get("urls")),
                      "mentions": lambda t: bool(t["entities"].get("mentions")),
                      "hashtags": lambda t: bool(t["entities"].get("hashtags"))}
        if value not in checks:
            raise QueryError(f"Reference to invalid operator '{name}:{value}'.")
        return checks[value]
    word = piece.lower()
    if word.startswith("#") and len(word) > 1:
        return lambda t: word[1:] in t["_hashtags"]
    if word.startswith("@") and len(word) > 1:
        return lambda t: word[1:] in t["_mentions"]
    if piece == "AND":
        raise QueryError("AND is implicit: leave a space between terms.")
    words = [w.lstrip("#@$") for w in _WORD.findall(word)]
    if not words:
        raise QueryError(f"'{piece}' is not a term.")
    if len(words) == 1:
        return lambda t: words[0] in t["_words"]
    joined = " ".join(words)  # "la-tertulia": its words in a row, as X's tokenizer reads it
    return lambda t: f" {joined} " in f" {t['_plain']} "


# --- the server ------------------------------------------------------------------------------


class XSandbox(SandboxHTTPServer):
    """X API v2 on a local port, holding the tweets and rules it is given and the tweets the store posts."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, credentials: dict[str, str] | None = None,
                 me_username: str = "latertulia", me_name: str = "La Tertulia",
                 heartbeat_seconds: float = 20.0) -> None:
        super().__init__(host=host, port=port)
        self.credentials = dict(CREDENTIALS) | dict(credentials or {})
        self.bearer_token = self.credentials["bearer_token"]
        self.consumer_key, self.consumer_secret = self.credentials["consumer_key"], self.credentials["consumer_secret"]
        self.access_token = self.credentials["access_token"]
        self.access_token_secret = self.credentials["access_token_secret"]
        self.user_access_token = self.credentials["user_access_token"]
        self.heartbeat_seconds = heartbeat_seconds
        self.users: dict[str, dict[str, Any]] = {}
        self.tweets: dict[int, dict[str, Any]] = {}
        self.rules: dict[str, dict[str, str]] = {}  # id -> {"id", "value", "tag"?}
        self._predicates: dict[str, Any] = {}
        self.posted: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.heartbeats_sent = 0
        self.stream_lines_sent: list[str] = []
        self.stream_connections = 0
        self._streams: list[queue.Queue] = []
        self._tokens: dict[str, tuple[tuple, int]] = {}
        self._failures: dict[str, list[dict[str, Any]]] = {}
        self._limits: dict[tuple[str, str], dict[str, int]] = {}
        self._limit_overrides: dict[str, dict[str, int]] = {}
        self._nonces: set[str] = set()
        self._last_id = 0
        self._rule_ids = itertools.count(1_580_000_000_000_000_000)
        self._closing = threading.Event()
        self.stream_connected = threading.Event()
        self.me = self.add_user(me_username, name=me_name, followers=1200)

    def stop(self) -> None:
        self._closing.set()
        super().stop()

    # --- what tests and the demo call -------------------------------------------------------

    def add_user(self, username: str, *, name: str = "", followers: int = 0, id: str | None = None,
                 description: str = "") -> dict[str, Any]:
        with self.lock:
            for user in self.users.values():
                if user["username"].lower() == username.lower():
                    return user
            user_id = str(id or self._new_id())
            user = {"id": user_id, "name": name or username, "username": username, "description": description,
                    "created_at": "2015-03-02T10:00:00.000Z", "protected": False, "verified": False,
                    "public_metrics": {"followers_count": followers, "following_count": 100, "tweet_count": 500,
                                       "listed_count": 2, "like_count": 800}}
            self.users[user_id] = user
            return user

    def add_tweet(self, text: str, *, author: str = "ana_lectora", id: int | str | None = None,
                  created_at: datetime | None = None, conversation_id: str | None = None,
                  in_reply_to: str | None = None, lang: str = "es", metrics: dict[str, int] | None = None,
                  retweet_of: str | None = None) -> dict[str, Any]:
        """A tweet by `author` (a username; made up if unknown), searchable at once and sent to every open
        stream whose rules it matches. `id` replays a real tweet id (its time comes from the id)."""
        user = self.add_user(author)
        with self.lock:
            parent = self.tweets.get(int(in_reply_to)) if in_reply_to else None
            if parent is not None and not text.lower().startswith(f"@{parent['_author']['username'].lower()}"):
                text = f"@{parent['_author']['username']} {text}"  # X writes the answered @username first
            tweet = self._record(text=text, user=user, id=id, created_at=created_at, conversation_id=conversation_id,
                                 in_reply_to=in_reply_to, parent=parent, lang=lang, metrics=metrics,
                                 retweet_of=retweet_of)
            streams = list(self._streams)
        for stream in streams:
            stream.put(tweet)
        return self.public(tweet)

    def add_raw_stream_line(self, line: str) -> None:
        """Send `line` as it is (plus \\r\\n) to every open stream: a broken payload, an error object..."""
        with self.lock:
            streams = list(self._streams)
        for stream in streams:
            stream.put(line)

    def stream_end(self, *, operational_disconnect: bool = False) -> None:
        """Close every open stream after what is queued for it, optionally with X's operational-disconnect line."""
        if operational_disconnect:
            self.add_raw_stream_line(json.dumps({"errors": [{
                "title": "operational-disconnect", "disconnect_type": "OperationalDisconnect",
                "detail": "This stream has been disconnected for operational reasons.",
                "type": "https://api.twitter.com/2/problems/operational-disconnect"}]}))
        with self.lock:
            streams = list(self._streams)
        for stream in streams:
            stream.put(STREAM_END)

    def fail(self, route: str, *, status: int | None = 503, body: Any = None, headers: dict[str, str] | None = None,
             times: int = 1, disconnect: bool = False, commit: bool = False) -> None:
        """The next `times` requests to `route` ("POST /2/tweets", "GET /2/users/:id/mentions"...) fail:
        with `status` and `body` (X's problem object for the status by default), or, with `disconnect`, by
        closing the connection without an answer. `commit`: do the work first (a tweet posted whose answer
        is lost)."""
        with self.lock:
            for _ in range(times):
                self._failures.setdefault(route, []).append(
                    {"status": status, "body": body, "headers": headers or {}, "disconnect": disconnect,
                     "commit": commit})

    def rate_limit(self, route: str, *, remaining: int, reset_in: float = 900.0, limit: int | None = None) -> None:
        """Set what is left of `route`'s budget (every auth context) and when it resets."""
        with self.lock:
            self._limit_overrides[route] = {"remaining": remaining, "reset": int(time.time() + reset_in),
                                            "limit": limit or 0}
            for key in [k for k in self._limits if k[0] == route]:
                del self._limits[key]

    def public(self, tweet: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in tweet.items() if not k.startswith("_")}

    # --- the records ------------------------------------------------------------------------

    def _new_id(self, moment: datetime | None = None) -> int:
        candidate = snowflake_at(moment or datetime.now(UTC)) | 1 << 12
        self._last_id = max(candidate, self._last_id + 1)
        return self._last_id

    def _user_by_name(self, username: str) -> dict[str, Any] | None:
        for user in self.users.values():
            if user["username"].lower() == username.lower():
                return user
        return None

    def _record(self, *, text: str, user: dict[str, Any], id: int | str | None, created_at: datetime | None,
                conversation_id: str | None, in_reply_to: str | None, parent: dict[str, Any] | None, lang: str,
                metrics: dict[str, int] | None, retweet_of: str | None) -> dict[str, Any]:
        tweet_id = int(id) if id is not None else self._new_id(created_at)
        moment = created_at or snowflake_time(tweet_id)
        entities: dict[str, list] = {}
        mentioned = []
        for match in re.finditer(r"(?<!\w)@(\w{1,15})", text):
            known = self._user_by_name(match[1])
            entry = {"start": match.start(), "end": match.end(), "username": match[1]}
            if known is not None:
                entry["id"] = known["id"]
                mentioned.append(known["id"])
            entities.setdefault("mentions", []).append(entry)
        for match in re.finditer(r"(?<!\w)#(\w+)", text):
            entities.setdefault("hashtags", []).append({"start": match.start(), "end": match.end(), "tag": match[1]})
        for match in _URL.finditer(text):
            entities.setdefault("urls", []).append({"start": match.start(), "end": match.end(), "url": match[0],
                                                    "expanded_url": match[0], "display_url": match[0][:30]})
        words = [w.lower() for w in _WORD.findall(text)]
        tweet: dict[str, Any] = {
            "id": str(tweet_id), "text": text, "edit_history_tweet_ids": [str(tweet_id)],
            "author_id": user["id"], "created_at": x_time(moment),
            "conversation_id": str(conversation_id or (parent["conversation_id"] if parent else in_reply_to or tweet_id)),
            "lang": lang, "possibly_sensitive": False, "reply_settings": "everyone", "entities": entities,
            "public_metrics": {"retweet_count": 0, "reply_count": 0, "like_count": 0, "quote_count": 0,
                               "bookmark_count": 0, "impression_count": 0} | dict(metrics or {}),
            "_author": user, "_mentions": {w[1:] for w in words if w.startswith("@")},
            "_hashtags": {w[1:] for w in words if w.startswith("#")},
            "_words": {w.lstrip("#@$") for w in words}, "_plain": " ".join(w.lstrip("#@$") for w in words),
            "_replied_to": in_reply_to, "_retweet_of": retweet_of, "_mentioned_ids": set(mentioned), "_to": None,
        }
        references = []
        if in_reply_to:
            references.append({"type": "replied_to", "id": str(in_reply_to)})
            if parent is not None:
                tweet["in_reply_to_user_id"] = parent["author_id"]
                tweet["_mentioned_ids"].add(parent["author_id"])
                tweet["_to"] = parent["_author"]["username"]
                parent["public_metrics"]["reply_count"] += 1
        if retweet_of:
            references.append({"type": "retweeted", "id": str(retweet_of)})
        if references:
            tweet["referenced_tweets"] = references
        self.tweets[tweet_id] = tweet
        return tweet

    # --- projections (what a request asked for) --------------------------------------------

    def project(self, tweet: dict[str, Any], fields: set[str]) -> dict[str, Any]:
        out = {"edit_history_tweet_ids": tweet["edit_history_tweet_ids"], "id": tweet["id"], "text": tweet["text"]}
        for name in sorted(fields):
            if name in tweet and name not in out:
                out[name] = tweet[name]
        return out

    def project_user(self, user: dict[str, Any], fields: set[str]) -> dict[str, Any]:
        out = {"id": user["id"], "name": user["name"], "username": user["username"]}
        for name in sorted(fields):
            if name in user and name not in out:
                out[name] = user[name]
        return out

    def includes(self, tweets: list[dict[str, Any]], options: dict[str, Any]) -> dict[str, Any]:
        expansions, user_fields = options["expansions"], options["user_fields"]
        users: dict[str, dict] = {}
        referenced: dict[str, dict] = {}
        for tweet in tweets:
            wanted = []
            if "author_id" in expansions:
                wanted.append(tweet["author_id"])
            if "in_reply_to_user_id" in expansions and tweet.get("in_reply_to_user_id"):
                wanted.append(tweet["in_reply_to_user_id"])
            if "entities.mentions.username" in expansions:
                wanted.extend(m["id"] for m in tweet["entities"].get("mentions", []) if "id" in m)
            for user_id in wanted:
                if user_id in self.users and user_id not in users:
                    users[user_id] = self.project_user(self.users[user_id], user_fields)
            if "referenced_tweets.id" in expansions:
                for reference in tweet.get("referenced_tweets", []):
                    other = self.tweets.get(int(reference["id"]))
                    if other is not None:
                        referenced[other["id"]] = self.project(other, options["tweet_fields"])
        out: dict[str, Any] = {}
        if users:
            out["users"] = list(users.values())
        if referenced:
            out["tweets"] = list(referenced.values())
        return out

    # --- rules -----------------------------------------------------------------------------

    def matching_rules(self, tweet: dict[str, Any]) -> list[dict[str, str]]:
        with self.lock:
            rules = list(self.rules.values())
            predicates = dict(self._predicates)
        out = []
        for rule in rules:
            if predicates[rule["id"]](tweet):
                out.append({"id": rule["id"], "tag": rule.get("tag", "")})
        return out


class _Reject(Exception):  # noqa: N818 - an answer, not a failure of the sandbox
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class XSandboxHandler(BaseHTTPRequestHandler):
    """One request to the X sandbox: route, auth, scripted failure, rate limit, then the endpoint."""

    sandbox: XSandbox
    protocol_version = "HTTP/1.1"
    server_version = "tsa_b"
    sys_version = ""

    def log_message(self, format, *args) -> None:  # noqa: A002 - http.server's signature
        pass

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    # --- plumbing ---------------------------------------------------------------------------

    def _route(self, method: str, path: str) -> tuple[str, dict[str, str]]:
        patterns = [
            (r"/2/tweets/search/recent", {}), (r"/2/tweets/search/stream/rules", {}), (r"/2/tweets/search/stream", {}),
            (r"/2/tweets", {}), (r"/2/users/me", {}), (r"/2/users/(?P<id>\d+)/mentions", {"id": ":id"}),
            (r"/2/users/(?P<id>\d+)/tweets", {"id": ":id"}),
        ]
        for pattern, names in patterns:
            match = re.fullmatch(pattern, path)
            if match:
                template = pattern
                for name, placeholder in names.items():
                    template = re.sub(rf"\(\?P<{name}>[^)]*\)", placeholder, template)
                return f"{method} {template}", match.groupdict()
        return f"{method} {path}", {}

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        route, params = self._route(method, parts.path)
        sandbox = self.sandbox
        context = self._auth(method, parts.path, parts.query)
        record = {"method": method, "path": parts.path, "route": route, "query": query,
                  "auth": context[0] if context else None, "body": raw.decode("utf-8", errors="replace")}
        with sandbox.lock:
            sandbox.requests.append(record)
        headers: dict[str, str] = {}
        try:
            if route not in RATE_LIMITS:
                raise _Reject(404, problem(404, f"No route for {method} {parts.path}", title="Not Found Error",
                                           type_="https://api.twitter.com/2/problems/resource-not-found"))
            if context is None:
                raise _Reject(401, problem(401, "Unauthorized"))
            app_limit, user_limit, window = RATE_LIMITS[route]
            if (context[0] == "app" and app_limit is None) or (context[0] != "app" and user_limit is None):
                allowed = "[OAuth 2.0 Application-Only]" if app_limit is not None else \
                    "[OAuth 1.0a User Context, OAuth 2.0 User Context]"
                used = "OAuth 2.0 Application-Only" if context[0] == "app" else "OAuth 1.0a User Context" \
                    if context[0] == "oauth1" else "OAuth 2.0 User Context"
                raise _Reject(403, problem(403, f"Authenticating with {used} is forbidden for this endpoint.  "
                                                f"Supported authentication types are {allowed}.",
                                           title="Unsupported Authentication",
                                           type_="https://api.twitter.com/2/problems/unsupported-authentication"))
            failure = self._scripted(route)
            headers = self._spend(route, context, app_limit if context[0] == "app" else user_limit, window)
            if failure is not None and not failure["commit"]:
                self._fail_with(failure, headers)
                return
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                raise _Reject(400, problem(400, "Request body is not valid JSON.")) from None
            handler = {
                "GET /2/tweets/search/recent": self._search, "GET /2/users/:id/mentions": self._mentions,
                "GET /2/users/:id/tweets": self._user_tweets, "GET /2/users/me": self._me,
                "GET /2/tweets/search/stream/rules": self._rules_get,
                "POST /2/tweets/search/stream/rules": self._rules_post, "POST /2/tweets": self._create,
            }.get(route)
            if route == "GET /2/tweets/search/stream":
                self._stream(query, headers)
                return
            status, answer = handler(query=query, params=params, body=body, context=context)
            if failure is not None:
                self._fail_with(failure, headers)
                return
            self._json(status, answer, headers)
        except _Reject as reject:
            self._json(reject.status, reject.body, headers | reject.headers)

    def _auth(self, method: str, path: str, raw_query: str) -> tuple[str, str] | None:
        """("app", "") for the app's Bearer token, ("oauth1"|"oauth2_user", user id) for a user, else None."""
        sandbox = self.sandbox
        header = self.headers.get("Authorization") or ""
        if header.startswith("Bearer "):
            token = header[7:].strip()
            if token and hmac.compare_digest(token, sandbox.bearer_token):
                return "app", ""
            if token and hmac.compare_digest(token, sandbox.user_access_token):
                return "oauth2_user", sandbox.me["id"]
            return None
        if header.startswith("OAuth "):
            params = dict(oauth_signature.collect_parameters(headers={"Authorization": header},
                                                             exclude_oauth_signature=False))
            if params.get("oauth_consumer_key") != sandbox.consumer_key or \
                    params.get("oauth_token") != sandbox.access_token or \
                    params.get("oauth_signature_method") != "HMAC-SHA1":
                return None
            nonce = f"{params.get('oauth_timestamp')}:{params.get('oauth_nonce')}"
            try:
                fresh = abs(time.time() - int(params.get("oauth_timestamp") or 0)) < 300
            except ValueError:
                fresh = False
            signed = oauth_signature.collect_parameters(uri_query=raw_query, headers={"Authorization": header})
            host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
            base = oauth_signature.signature_base_string(
                method, oauth_signature.base_string_uri(f"http://{host}{path}"),
                oauth_signature.normalize_parameters(signed))
            expected = oauth_signature.sign_hmac_sha1_with_client(base, SimpleNamespace(
                client_secret=sandbox.consumer_secret, resource_owner_secret=sandbox.access_token_secret))
            with sandbox.lock:
                replayed = nonce in sandbox._nonces
                sandbox._nonces.add(nonce)
            if not fresh or replayed or not hmac.compare_digest(expected, params.get("oauth_signature", "")):
                return None
            return "oauth1", sandbox.me["id"]
        return None

    def _scripted(self, route: str) -> dict[str, Any] | None:
        with self.sandbox.lock:
            queued = self.sandbox._failures.get(route)
            return queued.pop(0) if queued else None

    def _fail_with(self, failure: dict[str, Any], headers: dict[str, str]) -> None:
        if failure["disconnect"]:
            self.close_connection = True
            self.connection.shutdown(2)
            return
        status = failure["status"]
        body = failure["body"] if failure["body"] is not None else problem(status)
        self._json(status, body, headers | failure["headers"])

    def _spend(self, route: str, context: tuple[str, str], limit: int, window: int) -> dict[str, str]:
        sandbox = self.sandbox
        key = (route, context[0] if context[0] == "app" else f"user:{context[1]}")
        now = time.time()
        with sandbox.lock:
            bucket = sandbox._limits.get(key)
            override = sandbox._limit_overrides.pop(route, None)
            if override is not None:
                bucket = {"limit": override["limit"] or limit, "remaining": override["remaining"],
                          "reset": override["reset"]}
                for other in [k for k in sandbox._limits if k[0] == route]:
                    sandbox._limits[other] = dict(bucket)
            if bucket is None or now >= bucket["reset"]:
                bucket = {"limit": limit, "remaining": limit, "reset": int(now + window)}
            sandbox._limits[key] = bucket
            spent = bucket["remaining"] <= 0
            if not spent:
                bucket["remaining"] -= 1
            headers = {"x-rate-limit-limit": str(bucket["limit"]), "x-rate-limit-remaining": str(bucket["remaining"]),
                       "x-rate-limit-reset": str(bucket["reset"])}
        if spent:
            raise _Reject(429, problem(429, "Too Many Requests"), headers)
        return headers

    def _json(self, status: int, body: Any, headers: dict[str, str]) -> None:
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("cache-control", "no-cache, no-store, max-age=0")
        self.send_header("api-version", "2.166")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    # --- request options shared by the timelines ---------------------------------------------

    def _options(self, query: dict[str, str]) -> dict[str, Any]:
        def listed(name: str, allowed: frozenset[str]) -> set[str]:
            values = {v for v in (query.get(name) or "").split(",") if v}
            unknown = sorted(values - allowed)
            if unknown:
                raise _Reject(400, invalid_request(
                    name, query[name], f"The `{name}` query parameter value [{unknown[0]}] is not one of "
                                       f"[{','.join(sorted(allowed))}]"))
            return values

        return {"tweet_fields": listed("tweet.fields", TWEET_FIELDS), "user_fields": listed("user.fields", USER_FIELDS),
                "expansions": listed("expansions", EXPANSIONS)}

    def _page(self, *, matches, query: dict[str, str], cursor_param: str, fingerprint: tuple, low: int,
              default: int) -> tuple[int, dict[str, Any]]:
        options = self._options(query)
        try:
            max_results = int(query.get("max_results") or default)
        except ValueError:
            raise _Reject(400, invalid_request("max_results", query["max_results"],
                                               "The `max_results` query parameter value is not a number")) from None
        if not low <= max_results <= 100:
            raise _Reject(400, invalid_request(
                "max_results", str(max_results),
                f"The `max_results` query parameter value [{max_results}] is not between {low} and 100"))
        since = _id_param(query, "since_id")
        until = _id_param(query, "until_id")
        token = query.get(cursor_param)
        sandbox = self.sandbox
        if token:
            with sandbox.lock:
                saved = sandbox._tokens.get(token)
            if saved is None or saved[0] != fingerprint:
                raise _Reject(400, invalid_request(cursor_param, token,
                                                   f"The `{cursor_param}` query parameter value [{token}] is not valid"))
            until = saved[1] if until is None else min(until, saved[1])
        with sandbox.lock:
            found = sorted((t for t in sandbox.tweets.values() if matches(t)
                            and (since is None or int(t["id"]) > since) and (until is None or int(t["id"]) < until)),
                           key=lambda t: int(t["id"]), reverse=True)
        page, more = found[:max_results], len(found) > max_results
        meta: dict[str, Any] = {}
        if page:
            meta = {"newest_id": page[0]["id"], "oldest_id": page[-1]["id"], "result_count": len(page)}
        else:
            meta = {"result_count": 0}
        if more:
            next_token = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(45))
            with sandbox.lock:
                sandbox._tokens[next_token] = (fingerprint, int(page[-1]["id"]))
            meta["next_token"] = next_token
        answer: dict[str, Any] = {}
        if page:
            answer["data"] = [sandbox.project(t, options["tweet_fields"]) for t in page]
            included = sandbox.includes(page, options)
            if included:
                answer["includes"] = included
        answer["meta"] = meta
        return 200, answer

    # --- endpoints -----------------------------------------------------------------------------

    def _search(self, *, query, params, body, context):
        text = query.get("query")
        if not text:
            raise _Reject(400, invalid_request("query", "", "The `query` query parameter can not be empty"))
        if len(text) > 512:
            raise _Reject(400, invalid_request("query", text, "The `query` query parameter is too long: at most "
                                                              "512 characters"))
        try:
            predicate = query_parse(text)
        except QueryError as exc:
            raise _Reject(400, invalid_request("query", text, f"There were errors processing your request: {exc}")) \
                from None
        return self._page(matches=predicate, query=query, cursor_param="next_token",
                          fingerprint=("search", text, query.get("since_id"), query.get("until_id")),
                          low=10, default=10)

    def _mentions(self, *, query, params, body, context):
        user_id = params["id"]
        if user_id not in self.sandbox.users:
            raise _Reject(404, {"errors": [{"value": user_id, "detail": f"Could not find user with id: [{user_id}].",
                                            "title": "Not Found Error", "resource_type": "user", "parameter": "id",
                                            "resource_id": user_id,
                                            "type": "https://api.twitter.com/2/problems/resource-not-found"}]})

        def matches(tweet):
            return user_id in tweet["_mentioned_ids"] and tweet["author_id"] != user_id

        meta_order = ("next_token", "result_count", "newest_id", "oldest_id")
        status, answer = self._page(matches=matches, query=query, cursor_param="pagination_token",
                                    fingerprint=("mentions", user_id, query.get("since_id"), query.get("until_id")),
                                    low=5, default=10)
        answer["meta"] = {k: answer["meta"][k] for k in meta_order if k in answer["meta"]}
        return status, answer

    def _user_tweets(self, *, query, params, body, context):
        user_id = params["id"]
        return self._page(matches=lambda t: t["author_id"] == user_id, query=query, cursor_param="pagination_token",
                          fingerprint=("tweets", user_id, query.get("since_id"), query.get("until_id")),
                          low=5, default=10)

    def _me(self, *, query, params, body, context):
        options = self._options(query)
        return 200, {"data": self.sandbox.project_user(self.sandbox.users[context[1]], options["user_fields"])}

    def _rules_get(self, *, query, params, body, context):
        sandbox = self.sandbox
        wanted = {i for i in (query.get("ids") or "").split(",") if i}
        with sandbox.lock:
            rules = [dict(r) for r in sandbox.rules.values() if not wanted or r["id"] in wanted]
        answer: dict[str, Any] = {}
        if rules:
            answer["data"] = rules
        answer["meta"] = {"sent": x_time(datetime.now(UTC)), "result_count": len(rules)}
        return 200, answer

    def _rules_post(self, *, query, params, body, context):
        sandbox = self.sandbox
        dry_run = query.get("dry_run") == "true"
        if not isinstance(body, dict) or not (("add" in body) ^ ("delete" in body)):
            raise _Reject(400, {"errors": [{"message": "Request must contain either 'add' or 'delete', not both"}],
                                "title": "Invalid Request", "detail": "One or more parameters to your request was "
                                "invalid.", "type": INVALID_REQUEST})
        sent = x_time(datetime.now(UTC))
        if "delete" in body:
            ids = (body.get("delete") or {}).get("ids") or []
            if not isinstance(ids, list):
                raise _Reject(400, invalid_request("delete.ids", str(ids), "ids must be a list of rule ids"))
            errors, deleted = [], 0
            with sandbox.lock:
                for rule_id in ids:
                    if str(rule_id) in sandbox.rules:
                        if not dry_run:
                            del sandbox.rules[str(rule_id)]
                            del sandbox._predicates[str(rule_id)]
                        deleted += 1
                    else:
                        errors.append({"value": str(rule_id), "details": ["Rule does not exist"], "title": "RuleNotFound",
                                       "type": "https://api.twitter.com/2/problems/rule-not-found"})
            answer: dict[str, Any] = {"meta": {"sent": sent, "summary": {"deleted": deleted,
                                                                         "not_deleted": len(ids) - deleted}}}
            if errors:
                answer["errors"] = errors
            return 200, answer
        adds = body.get("add")
        if not isinstance(adds, list) or not adds:
            raise _Reject(400, invalid_request("add", str(adds), "add must be a non-empty list of rules"))
        parsed, invalid = [], []
        for rule in adds:
            value = rule.get("value") if isinstance(rule, dict) else None
            try:
                if not isinstance(value, str) or len(value) > 512:
                    raise QueryError("A rule is a string of at most 512 characters.")
                parsed.append((rule, query_parse(value)))
            except QueryError as exc:
                invalid.append({"value": value if isinstance(value, str) else str(value), "details": [str(exc)],
                                "title": "UnprocessableEntity", "type": "https://api.twitter.com/2/problems/invalid-rules"})
        if invalid:
            # One invalid rule refuses the whole request, as on X.
            return 400, {"meta": {"sent": sent, "summary": {"created": 0, "not_created": len(adds), "valid":
                                                            len(parsed), "invalid": len(invalid)}},
                         "errors": invalid, "title": "Invalid Request",
                         "detail": "One or more parameters to your request was invalid.", "type": INVALID_REQUEST}
        created, errors = [], []
        with sandbox.lock:
            existing = {r["value"]: r["id"] for r in sandbox.rules.values()}
            for rule, predicate in parsed:
                if rule["value"] in existing:
                    errors.append({"value": rule["value"], "id": existing[rule["value"]], "title": "DuplicateRule",
                                   "type": "https://api.twitter.com/2/problems/duplicate-rules"})
                    continue
                entry = {"id": str(next(sandbox._rule_ids)), "value": rule["value"]}
                if rule.get("tag"):
                    entry["tag"] = str(rule["tag"])
                if not dry_run:
                    sandbox.rules[entry["id"]] = entry
                    sandbox._predicates[entry["id"]] = predicate
                existing[rule["value"]] = entry["id"]
                created.append({k: entry[k] for k in ("value", "tag", "id") if k in entry})
        answer = {}
        if created:
            answer["data"] = created
        answer["meta"] = {"sent": sent, "summary": {"created": len(created), "not_created": len(errors),
                                                    "valid": len(parsed), "invalid": 0}}
        if errors:
            answer["errors"] = errors
        return 201 if created else 200, answer

    def _create(self, *, query, params, body, context):
        sandbox = self.sandbox
        if not isinstance(body, dict):
            raise _Reject(400, invalid_request("body", "", "The request body must be a JSON object"))
        text = body.get("text")
        reply = body.get("reply") or {}
        target_id = str(reply.get("in_reply_to_tweet_id") or "") if isinstance(reply, dict) else ""
        if not isinstance(text, str) or not text.strip():
            raise _Reject(400, invalid_request("text", "", "The `text` field can not be empty"))
        if len(text) > MAX_TEXT:
            raise _Reject(400, problem(400, "Your Tweet text is too long. For more information on how X determines "
                                            "text length see https://github.com/twitter/twitter-text."))
        author = sandbox.users[context[1]]
        with sandbox.lock:
            parent = sandbox.tweets.get(int(target_id)) if target_id.isdigit() else None
            if target_id and parent is None:
                raise _Reject(403, problem(403, "You attempted to reply to a Tweet that is deleted or not visible "
                                                "to you."))
            if any(t["author_id"] == author["id"] and t["_given_text"] == text
                   for t in sandbox.tweets.values() if "_given_text" in t):
                raise _Reject(403, problem(403, "You are not allowed to create a Tweet with duplicate content."))
            shown = text
            if parent is not None and not text.lower().startswith(f"@{parent['_author']['username'].lower()}"):
                shown = f"@{parent['_author']['username']} {text}"
            tweet = sandbox._record(text=shown, user=author, id=None, created_at=None, conversation_id=None,
                                    in_reply_to=target_id or None, parent=parent, lang=body.get("lang") or "es",
                                    metrics=None, retweet_of=None)
            tweet["_given_text"] = text
            sandbox.posted.append({"id": tweet["id"], "text": tweet["text"], "given_text": text,
                                   "in_reply_to_tweet_id": target_id, "auth": context[0], "body": body})
            streams = list(sandbox._streams)
        for stream in streams:
            stream.put(tweet)
        return 201, {"data": {"id": tweet["id"], "text": tweet["text"]}}

    # --- the filtered stream ---------------------------------------------------------------------

    def _stream(self, query: dict[str, str], headers: dict[str, str]) -> None:
        sandbox = self.sandbox
        options = self._options(query)
        if query.get("backfill_minutes"):
            raise _Reject(403, problem(403, "backfill_minutes is not available at this access level."))
        with sandbox.lock:
            has_rules = bool(sandbox.rules)
        if not has_rules:
            raise _Reject(409, problem(409, "The stream has no rules: add rules before connecting.",
                                       title="ConnectionException",
                                       type_="https://api.twitter.com/2/problems/streaming-connection"))
        inbox: queue.Queue = queue.Queue()
        with sandbox.lock:
            sandbox._streams.append(inbox)
            sandbox.stream_connections += 1
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Transfer-Encoding", "chunked")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.flush()
            sandbox.stream_connected.set()
            while not sandbox._closing.is_set():
                try:
                    item = inbox.get(timeout=sandbox.heartbeat_seconds)
                except queue.Empty:
                    self._chunk(b"\r\n")
                    with sandbox.lock:
                        sandbox.heartbeats_sent += 1
                    continue
                if item is STREAM_END:
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    return
                if isinstance(item, str):
                    line = item
                else:
                    rules = sandbox.matching_rules(item)
                    if not rules:
                        continue
                    message: dict[str, Any] = {"data": sandbox.project(item, options["tweet_fields"])}
                    included = sandbox.includes([item], options)
                    if included:
                        message["includes"] = included
                    message["matching_rules"] = rules
                    line = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
                self._chunk(line.encode() + b"\r\n")
                with sandbox.lock:
                    sandbox.stream_lines_sent.append(line)
        except (BrokenPipeError, ConnectionResetError, OSError):
            return  # the client went away
        finally:
            with sandbox.lock:
                if inbox in sandbox._streams:
                    sandbox._streams.remove(inbox)
                if not sandbox._streams:
                    sandbox.stream_connected.clear()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _id_param(query: dict[str, str], name: str) -> int | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise _Reject(400, invalid_request(name, value, f"The `{name}` query parameter value [{value}] is not valid"))
    return int(value)


XSandbox.handler_class = XSandboxHandler
