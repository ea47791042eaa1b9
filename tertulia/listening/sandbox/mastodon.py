"""A local Mastodon server: the REST and streaming API a store's account uses, answering in Mastodon's own JSON.

What it serves (paths, parameters and error bodies as docs.joinmastodon.org describes them):

- GET /api/v1/instance, /api/v2/instance (both advertise this server as the streaming server:
  `urls.streaming_api` and `configuration.urls.streaming`, which Mastodon.py follows);
- GET /api/v1/accounts/verify_credentials (the store's account);
- GET /api/v1/timelines/tag/:hashtag and /api/v1/timelines/public (`local`, `remote`, `max_id`,
  `since_id`, `min_id`, `limit`; a `Link` header with the next and previous pages);
- GET /api/v2/search?type=statuses&q=... (`min_id`, `max_id`, `limit`, `offset`);
- GET /api/v1/notifications (`types[]`, `exclude_types[]`, `max_id`, `since_id`, `min_id`, `limit`, `Link`);
- GET /api/v1/statuses/:id, POST /api/v1/statuses (form or JSON, Bearer token, Idempotency-Key,
  `in_reply_to_id`, `visibility`, `language`, `spoiler_text`; 500 characters counted as Mastodon counts
  them), DELETE /api/v1/statuses/:id;
- the streaming API as server-sent events: GET /api/v1/streaming/health, /api/v1/streaming/hashtag?tag=,
  /hashtag/local, /public, /public/local, /public/remote (`event: update` / `data: <Status>` lines,
  `event: delete`, a `:)` on connecting and `:thump` heartbeat comments).

Every /api/ answer carries X-RateLimit-Limit/Remaining/Reset, counted per token over a 5-minute window
(300 requests, Mastodon's default), and errors are `{"error": "..."}` with 401, 404, 422 or 429.

Entities are built from real recorded ones (mastodon_entities.json, see its SOURCE note): `add_status`
makes a status by anyone, which goes where Mastodon would put it (the public and hashtag timelines and
streams when public, the search index, and a mention notification when it names the store's account);
`add_raw_status` replays a recorded one as it is. What the store posts is kept in `posted`. Tests script
failures with `fail_next` and inject what a real server sometimes sends with `add_raw_entry` and
`stream_raw`.
"""

import copy
import html
import json
import queue
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from tertulia.listening.connectors.base import html_to_text
from tertulia.listening.sandbox import SandboxHTTPServer

ENTITIES = json.loads((Path(__file__).resolve().parent / "mastodon_entities.json").read_text())
STATUS_TEMPLATE: dict[str, Any] = ENTITIES["status"]
INSTANCE_V2: dict[str, Any] = ENTITIES["instance_v2"]
NOTIFICATION_TEMPLATE: dict[str, Any] = ENTITIES["notification"]

DEFAULT_TOKEN = "sandbox-mastodon-token"  # noqa: S105 - the sandbox's own token, not a secret
MAX_CHARACTERS = 500
URL_CHARACTERS = 23  # configuration.statuses.characters_reserved_per_url
VISIBILITIES = ("public", "unlisted", "private", "direct")
_MENTION = re.compile(r"(?<![\w@/])@([A-Za-z0-9_]+(?:[.-]+[A-Za-z0-9_]+)*)"
                      r"(?:@([A-Za-z0-9.-]+\.[A-Za-z]{2,}|localhost(?::\d+)?))?")
_HASHTAG = re.compile(r"(?<![\w#&/])#(\w+)")
_URL = re.compile(r"https?://\S+")
_INSTANCE_PATHS = ("/api/v1/instance", "/api/v2/instance")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _key(status_id: str) -> tuple[int, str]:
    # Mastodon ids are numbers in strings ("117020593741189701"); order by length, then text, so a
    # shorter (older) id sorts first without ever parsing something that is not a number.
    return len(status_id), status_id


def characters(text: str) -> int:
    """The length Mastodon checks against the limit: a URL counts 23, a mention only its user part."""
    text = _URL.sub("x" * URL_CHARACTERS, text)
    text = _MENTION.sub(lambda m: "@" + m[1], text)
    return len(text)


@dataclass(slots=True)
class _Entry:
    """One item of a timeline: usually a Status, or whatever a test injected as it is."""

    key: tuple[int, str]
    payload: Any
    tags: frozenset[str] = frozenset()
    public: bool = True  # in the public and hashtag timelines
    local: bool = False
    reply: bool = False  # replies to someone else stay out of the public timeline
    searchable: str = ""  # lower-case text the search finds it by ("" = not indexed)
    status_id: str | None = None


@dataclass(slots=True)
class _Stream:
    kind: str  # hashtag | public
    tag: str = ""
    local: bool = False
    remote: bool = False
    events: "queue.Queue[bytes | None]" = field(default_factory=queue.Queue)

    def wants(self, entry: _Entry) -> bool:
        if not entry.public or (self.local and not entry.local) or (self.remote and entry.local):
            return False
        return self.tag in entry.tags if self.kind == "hashtag" else True


@dataclass(slots=True)
class _Failure:
    status: int
    body: Any
    headers: dict[str, str] | None
    path: str | None


def _one(params: dict[str, list[str]], name: str) -> str:
    values = params.get(name) or [""]
    return values[-1]


def _int(params: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    try:
        return max(low, min(high, int(_one(params, name) or default)))
    except ValueError:
        return default


def _flag(params: dict[str, list[str]], name: str) -> bool:
    return _one(params, name).lower() in ("1", "true", "yes", "on")


def _list(params: dict[str, list[str]], name: str) -> list[str]:
    return [v for v in (params.get(f"{name}[]") or []) + (params.get(name) or []) if v]


class _Handler(BaseHTTPRequestHandler):
    sandbox: "MastodonSandbox"
    protocol_version = "HTTP/1.1"  # the streaming API is chunked HTTP/1.1, as Mastodon's streaming server sends it

    def log_message(self, *args) -> None:
        pass

    # --- answering -------------------------------------------------------------------------------

    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None, *, rate: bool = True) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8" if not isinstance(body, bytes)
                         else "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        values = dict(self._rate) if rate and getattr(self, "_rate", None) else {}
        values.update(headers or {})
        for name, value in values.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._answer(status, {"error": message}, headers)

    def _bearer(self) -> str | None:
        header = self.headers.get("Authorization") or ""
        if header.startswith("Bearer "):
            return header[7:].strip()
        token = _one(self._params, "access_token")
        return token or None

    def _authorized(self) -> bool:
        return self._bearer() == self.sandbox.token

    def _begin(self, method: str, body: bytes = b"") -> bool:
        """Record the request, count it, apply a scripted failure; False when it has been answered."""
        sandbox = self.sandbox
        split = urlsplit(self.path)
        self._path = unquote(split.path).rstrip("/") or "/"
        self._params = parse_qs(split.query, keep_blank_values=True)
        self._form: dict[str, Any] = {}
        if body:
            if (self.headers.get("Content-Type") or "").startswith("application/json"):
                try:
                    loaded = json.loads(body)
                    self._form = loaded if isinstance(loaded, dict) else {}
                except ValueError:
                    self._form = {}
            else:
                for name, values in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items():
                    self._form[name] = values if name.endswith("[]") else values[-1]
        sandbox.requests.append({"method": method, "path": self._path, "query": self._params,
                                 "form": self._form, "headers": dict(self.headers)})
        self._rate = None
        remaining = 0
        # The REST API is rate limited; the streaming server (a separate process on Mastodon) is not.
        if self._path.startswith("/api/") and not self._path.startswith("/api/v1/streaming"):
            remaining, reset = sandbox._count(self._bearer() or self.client_address[0])
            self._rate = {"X-RateLimit-Limit": str(sandbox.rate_limit),
                          "X-RateLimit-Remaining": str(max(remaining, 0)),
                          "X-RateLimit-Reset": _iso(datetime.fromtimestamp(reset, UTC))}
        failure = sandbox._scripted(self._path)
        if failure is not None:
            self._answer(failure.status, failure.body, failure.headers)
            return False
        if self._rate is not None and remaining < 0:
            self._error(429, "Too many requests")
            return False
        token = self._bearer()
        if token is not None and token != sandbox.token and not self._path.startswith(_INSTANCE_PATHS):
            self._error(401, "The access token is invalid")
            return False
        return True

    # --- routes ----------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if not self._begin("GET"):
            return
        sandbox, path = self.sandbox, self._path
        if path == "/api/v1/instance":
            return self._answer(200, sandbox.instance_v1())
        if path == "/api/v2/instance":
            return self._answer(200, sandbox.instance_v2())
        if path == "/api/v1/accounts/verify_credentials":
            if not self._authorized():
                return self._error(401, "The access token is invalid")
            return self._answer(200, sandbox.verify_credentials())
        if path.startswith("/api/v1/timelines/tag/"):
            tag = path.rsplit("/", 1)[1].lower()
            return self._listing(sandbox._timeline_entries(tag=tag, params=self._params), default=20, maximum=40)
        if path == "/api/v1/timelines/public":
            return self._listing(sandbox._timeline_entries(tag=None, params=self._params), default=20, maximum=40)
        if path == "/api/v2/search":
            return self._search()
        if path == "/api/v1/notifications":
            return self._notifications()
        match = re.fullmatch(r"/api/v1/statuses/(\d+)", path)
        if match:
            with sandbox.lock:
                status = sandbox.statuses.get(match[1])
            if status is None or (status.get("visibility") in ("private", "direct")
                                  and status["account"]["id"] != sandbox.me["id"] and not self._authorized()):
                return self._error(404, "Record not found")
            return self._answer(200, status)
        if path == "/api/v1/streaming/health":
            return self._answer(200, b"OK", rate=False)
        if path.startswith("/api/v1/streaming"):
            return self._stream()
        self._error(404, "Record not found")

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        if not self._begin("POST", self.rfile.read(length) if length else b""):
            return
        if self._path != "/api/v1/statuses":
            return self._error(404, "Record not found")
        if not self._authorized():
            return self._error(401, "The access token is invalid")
        self._status_post()

    def do_DELETE(self) -> None:  # noqa: N802 - http.server's name
        if not self._begin("DELETE"):
            return
        sandbox = self.sandbox
        match = re.fullmatch(r"/api/v1/statuses/(\d+)", self._path)
        if not self._authorized():
            return self._error(401, "The access token is invalid")
        with sandbox.lock:
            status = sandbox.statuses.get(match[1]) if match else None
            # Only one's own statuses can be deleted; anyone else's is "not found", as Mastodon answers.
            if status is None or status["account"]["id"] != sandbox.me["id"]:
                status = None
            else:
                del sandbox.statuses[match[1]]
                sandbox.timeline = [e for e in sandbox.timeline if e.status_id != match[1]]
                for stream in sandbox._streams:
                    stream.events.put(b"event: delete\ndata: " + match[1].encode() + b"\n\n")
                sandbox.deleted.append(match[1])
        if status is None:
            return self._error(404, "Record not found")
        self._answer(200, {**status, "text": sandbox._sources.get(status["id"], status["content"])})

    # --- the pieces -------------------------------------------------------------------------------

    def _listing(self, entries: list[_Entry], *, default: int, maximum: int) -> None:
        page = self.sandbox._page(entries, self._params, default=default, maximum=maximum)
        headers = {}
        if page:
            keep = {k: v for k, v in self._params.items() if k not in ("max_id", "since_id", "min_id", "access_token")}
            base = f"{self.sandbox.base_url}{self._path}?"
            newer = urlencode({**keep, "min_id": page[0].key[1]}, doseq=True)
            older = urlencode({**keep, "max_id": page[-1].key[1]}, doseq=True)
            headers["Link"] = f'<{base}{older}>; rel="next", <{base}{newer}>; rel="prev"'
        self._answer(200, [e.payload for e in page], headers)

    def _search(self) -> None:
        query = _one(self._params, "q").strip()
        kind = _one(self._params, "type")
        if not query:
            return self._error(422, "Validation failed: Query can't be blank")
        if _one(self._params, "offset") and not self._authorized():
            return self._error(401, "Search queries with offset are only allowed for authenticated users")
        statuses: list[Any] = []
        if kind in ("", "statuses"):
            words = query.lower().split()
            tag = query[1:].lower() if query.startswith("#") and " " not in query else None
            with self.sandbox.lock:
                entries = list(self.sandbox.timeline)
            found = [e for e in entries if (tag in e.tags if tag else
                                            e.searchable and all(w in e.searchable for w in words))]
            limit, offset = _int(self._params, "limit", 20, 1, 40), _int(self._params, "offset", 0, 0, 10_000)
            page = self.sandbox._page(found, {**self._params, "limit": [str(limit + offset)]}, default=20,
                                      maximum=limit + offset)
            statuses = [e.payload for e in page[offset:]]
        self._answer(200, {"accounts": [], "statuses": statuses, "hashtags": []})

    def _notifications(self) -> None:
        if not self._authorized():
            return self._error(401, "The access token is invalid")
        types, excluded = set(_list(self._params, "types")), set(_list(self._params, "exclude_types"))
        with self.sandbox.lock:
            entries = list(self.sandbox.notifications)
        chosen = []
        for entry in entries:
            kind = entry.payload.get("type") if isinstance(entry.payload, dict) else None
            if (types and kind is not None and kind not in types) or kind in excluded:
                continue
            chosen.append(entry)
        self._listing(chosen, default=40, maximum=80)

    def _status_post(self) -> None:
        sandbox, form = self.sandbox, self._form
        key = self.headers.get("Idempotency-Key")
        with sandbox.lock:
            if key and key in sandbox.idempotency and sandbox.idempotency[key] in sandbox.statuses:
                return self._answer(200, sandbox.statuses[sandbox.idempotency[key]])
            text = str(form.get("status") or "")
            visibility = str(form.get("visibility") or "public")
            in_reply_to_id = str(form.get("in_reply_to_id") or "") or None
            if not text.strip():
                return self._error(422, "Validation failed: Text can't be blank")
            if characters(text) > MAX_CHARACTERS:
                return self._error(422, f"Validation failed: Text character limit of {MAX_CHARACTERS} exceeded")
            if visibility not in VISIBILITIES:
                return self._error(422, "Validation failed: Visibility is not included in the list")
            if in_reply_to_id and in_reply_to_id not in sandbox.statuses:
                return self._error(404, "The post you are trying to reply to does not appear to exist.")
            language = str(form.get("language") or "") or sandbox.verify_credentials()["source"]["language"]
            status = sandbox._status_build(text=text, account=sandbox.me, visibility=visibility,
                                           in_reply_to_id=in_reply_to_id, language=language,
                                           spoiler_text=str(form.get("spoiler_text") or ""))
            sandbox._deliver(status)
            sandbox.posted.append(status)
            if key:
                sandbox.idempotency[key] = status["id"]
        self._answer(200, status)

    def _stream(self) -> None:
        sandbox, path = self.sandbox, self._path
        if not self._authorized():
            return self._answer(401, {"error": "Missing access token" if self._bearer() is None
                                      else "Invalid access token"}, rate=False)
        names = {"/api/v1/streaming/hashtag": ("hashtag", False, False),
                 "/api/v1/streaming/hashtag/local": ("hashtag", True, False),
                 "/api/v1/streaming/public": ("public", False, False),
                 "/api/v1/streaming/public/local": ("public", True, False),
                 "/api/v1/streaming/public/remote": ("public", False, True)}
        if path == "/api/v1/streaming":  # the generic endpoint: ?stream=hashtag:local&tag=...
            wanted = _one(self._params, "stream").replace(":", "/")
            path = f"/api/v1/streaming/{wanted}" if wanted else path
        if path not in names:
            return self._answer(400, {"error": "Unknown stream type"}, rate=False)
        kind, local, remote = names[path]
        tag = _one(self._params, "tag").lstrip("#").lower()
        if kind == "hashtag" and not tag:
            return self._answer(400, {"error": "No tag for stream provided"}, rate=False)
        stream = _Stream(kind=kind, tag=tag, local=local, remote=remote)
        # Subscribed before the answer starts, so whatever is posted once the client has the headers reaches it.
        with sandbox.lock:
            sandbox._streams.append(stream)
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "private, no-store")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._chunk(b":)\n")
            while not sandbox._stopping.is_set():
                try:
                    event = stream.events.get(timeout=sandbox.heartbeat_seconds)
                except queue.Empty:
                    event = b":thump\n"
                if event is None:
                    break
                self._chunk(event)
            self._chunk(b"")
        except OSError:
            pass  # the client went away
        finally:
            with sandbox.lock:
                if stream in sandbox._streams:
                    sandbox._streams.remove(stream)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


class MastodonSandbox(SandboxHTTPServer):
    """A Mastodon instance with one signed-in account (the store's), and anyone else who writes."""

    handler_class = _Handler

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, token: str = DEFAULT_TOKEN, username: str = "",
                 display_name: str = "", domain: str = "", known_accounts: Iterable[str] = (),
                 heartbeat_seconds: float = 15.0, rate_limit: int = 300, rate_window: float = 300.0) -> None:
        super().__init__(host=host, port=port)
        self.token = token
        self.domain = domain or f"localhost:{self.server.server_address[1]}"
        self.heartbeat_seconds = heartbeat_seconds
        self.show_reblogs_in_public_timelines = False
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.statuses: dict[str, dict[str, Any]] = {}  # every status by id, the store's and everyone's
        self.posted: list[dict[str, Any]] = []  # what the store posted, in order
        self.deleted: list[str] = []
        self.idempotency: dict[str, str] = {}
        self.requests: list[dict[str, Any]] = []  # every request: method, path, query, form, headers
        self.accounts: dict[str, dict[str, Any]] = {}  # by lower-case acct
        self.timeline: list[_Entry] = []
        self.notifications: list[_Entry] = []
        self.scripted: list[_Failure] = []
        self._streams: list[_Stream] = []
        self._sources: dict[str, str] = {}  # status id -> the text it was written with (DELETE answers it)
        self._stopping = threading.Event()
        self._last_id = 0
        self._last_notification = 100
        self._windows: dict[str, tuple[float, int]] = {}  # token or address -> (window start, requests)
        self.me = self._store_account(username, display_name)
        self.accounts[self.me["acct"].lower()] = self.me
        for acct in known_accounts:
            self.add_account(acct)

    # --- what callers use ------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()
        with self.lock:
            for stream in self._streams:
                stream.events.put(None)
        super().stop()

    def add_account(self, acct: str, *, display_name: str = "", followers_count: int = 0) -> dict[str, Any]:
        """The account of someone on this server ("luis") or elsewhere ("ana@social.example"); made once."""
        acct = acct.strip().lstrip("@")
        user, _sep, domain = acct.partition("@")
        if domain == self.domain:
            acct, domain = user, ""
        with self.lock:
            known = self.accounts.get(acct.lower())
            if known is not None:
                return known
            account = copy.deepcopy(STATUS_TEMPLATE["account"])
            account_id = self._new_id()
            web = f"https://{domain}" if domain else self.base_url
            account.update({
                "id": account_id, "username": user, "acct": acct, "display_name": display_name,
                "locked": False, "note": "", "url": f"{web}/@{user}", "uri": f"{web}/users/{user}",
                "avatar": f"{self.base_url}/avatars/original/missing.png",
                "avatar_static": f"{self.base_url}/avatars/original/missing.png",
                "header": f"{self.base_url}/headers/original/missing.png",
                "header_static": f"{self.base_url}/headers/original/missing.png",
                "followers_count": followers_count, "following_count": 0, "statuses_count": 0, "fields": [],
                "created_at": _iso(datetime.now(UTC)).split("T")[0] + "T00:00:00.000Z",
            })
            self.accounts[acct.lower()] = account
            return account

    def add_status(self, text: str = "", *, account: dict[str, Any] | str | None = None,
                   tags: Sequence[str] = (), visibility: str = "public", in_reply_to_id: str | None = None,
                   language: str | None = "es", spoiler_text: str = "", created_at: datetime | None = None,
                   favourites_count: int = 0, reblogs_count: int = 0, replies_count: int = 0,
                   reblog_of: str | None = None) -> dict[str, Any]:
        """A status someone wrote, delivered where Mastodon delivers it; returns the Status entity.

        `account` is an Account entity, an acct ("ana@social.example", "luis") or None (a person on
        another server); `tags` are added to the text as hashtags when it does not have them;
        `reblog_of` makes it a boost of that status.
        """
        if isinstance(account, dict):
            author = account
            with self.lock:
                self.accounts.setdefault(str(account.get("acct", "")).lower(), account)
        else:
            author = self.add_account(account or "lucia@social.example", display_name="Lucía")
        for tag in tags:
            if not re.search(rf"(?<![\w#])#{re.escape(tag)}\b", text, re.IGNORECASE):
                text = f"{text} #{tag}".strip()
        with self.lock:
            status = self._status_build(text=text, account=author, visibility=visibility,
                                        in_reply_to_id=in_reply_to_id, language=language,
                                        spoiler_text=spoiler_text, created_at=created_at)
            status.update(favourites_count=favourites_count, reblogs_count=reblogs_count,
                          replies_count=replies_count)
            if reblog_of is not None:
                original = self.statuses[reblog_of]
                status.update(content="", reblog=original, mentions=[], tags=[], spoiler_text="",
                              in_reply_to_id=None, in_reply_to_account_id=None)
            self._deliver(status)
        return status

    def add_raw_status(self, status: dict[str, Any], *, notify: bool | None = None) -> dict[str, Any]:
        """Replay a recorded Status as it is (its id, dates and account kept); it goes where a new one would.

        It notifies the store when its `mentions` name the store's account (or `notify=True`).
        """
        status = copy.deepcopy(status)
        with self.lock:
            account = status.get("account") or {}
            self.accounts.setdefault(str(account.get("acct", "")).lower(), account)
            self._last_id = max(self._last_id, int(status["id"]) if str(status["id"]).isdigit() else 0)
            self._deliver(status, notify=notify)
        return status

    def add_notification(self, kind: str, *, account: dict[str, Any] | str | None = None,
                         status: dict[str, Any] | None = None) -> dict[str, Any]:
        """A notification of another type (favourite, reblog, follow...) for the store's account."""
        author = account if isinstance(account, dict) else self.add_account(account or "lucia@social.example")
        with self.lock:
            return self._notify(kind, author, status)

    def add_raw_entry(self, payload: Any, *, tags: Sequence[str] = (), public: bool = True, local: bool = False,
                      searchable: str = "", notification: bool = False) -> None:
        """Put something into the timelines (or the notifications) exactly as given: what a test needs to
        see how a client copes with an entry that is not what the documentation promises."""
        with self.lock:
            raw_id = payload.get("id") if isinstance(payload, dict) else None
            key = _key(str(raw_id)) if isinstance(raw_id, str | int) and str(raw_id).isdigit() else _key(self._new_id())
            entry = _Entry(key=key, payload=payload, tags=frozenset(t.lower() for t in tags), public=public,
                           local=local, searchable=searchable.lower())
            if notification:
                if isinstance(raw_id, str | int) and str(raw_id).isdigit():
                    self._last_notification = max(self._last_notification, int(raw_id))
                self.notifications.append(entry)
            else:
                self.timeline.append(entry)

    def stream_raw(self, text: str, *, tag: str | None = None) -> int:
        """Send raw server-sent-event text to the open streams (of one hashtag, or all); returns how many."""
        data = text.encode()
        with self.lock:
            targets = [s for s in self._streams if tag is None or (s.kind == "hashtag" and s.tag == tag.lower())]
            for stream in targets:
                stream.events.put(data)
        return len(targets)

    def streams_drop(self) -> None:
        """Close every open stream, as a streaming server restarting does."""
        with self.lock:
            for stream in self._streams:
                stream.events.put(None)

    def stream_count(self, *, tag: str | None = None) -> int:
        with self.lock:
            return sum(1 for s in self._streams if tag is None or (s.kind == "hashtag" and s.tag == tag.lower()))

    def wait_for_streams(self, count: int = 1, *, tag: str | None = None, timeout: float = 10.0) -> bool:
        """Wait until `count` streams (of `tag`) are open; for tests that post once a client listens."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.stream_count(tag=tag) >= count:
                return True
            time.sleep(0.02)
        return False

    def fail_next(self, status: int, error: str, headers: dict[str, str] | None = None, *,
                  path: str | None = None, times: int = 1) -> None:
        """Answer the next request whose path starts with `path` with `{"error": error}` and `status`.

        By default the next REST request, but not the instance documents (clients read them as a
        capability check and ignore their failures) nor the streaming API (pass path="/api/v1/streaming").
        """
        with self.lock:
            self.scripted.extend(_Failure(status, {"error": error}, headers, path) for _ in range(times))

    def requests_to(self, path: str) -> list[dict[str, Any]]:
        return [r for r in list(self.requests) if r["path"].startswith(path)]

    def instance_v1(self) -> dict[str, Any]:
        return {"uri": self.domain, "title": INSTANCE_V2.get("title", "Mastodon"), "short_description": "",
                "description": INSTANCE_V2.get("description", ""), "email": "", "version": INSTANCE_V2["version"],
                "urls": {"streaming_api": self._streaming_url()},
                "stats": {"user_count": len(self.accounts), "status_count": len(self.statuses), "domain_count": 1},
                "languages": INSTANCE_V2.get("languages", []), "registrations": False, "approval_required": False}

    def instance_v2(self) -> dict[str, Any]:
        document = copy.deepcopy(INSTANCE_V2)
        document["domain"] = self.domain
        document["configuration"]["urls"]["streaming"] = self._streaming_url()
        document["configuration"]["urls"]["about"] = f"{self.base_url}/about"
        document["configuration"]["urls"]["privacy_policy"] = f"{self.base_url}/privacy-policy"
        return document

    def verify_credentials(self) -> dict[str, Any]:
        account = copy.deepcopy(self.me)
        account["source"] = {"privacy": "public", "sensitive": False, "language": "es", "note": "", "fields": [],
                             "follow_requests_count": 0, "hide_collections": True, "discoverable": True,
                             "indexable": True}
        return account

    # --- building and delivering ------------------------------------------------------------------

    def _streaming_url(self) -> str:
        return "ws://" + self.base_url.split("://", 1)[1]

    def _store_account(self, username: str, display_name: str) -> dict[str, Any]:
        account = copy.deepcopy(STATUS_TEMPLATE["account"])
        if username:
            account.update(username=username, acct=username, display_name=display_name or username,
                           id=self._new_id())
        elif display_name:
            account["display_name"] = display_name
        account["url"] = f"{self.base_url}/@{account['username']}"
        account["uri"] = f"{self.base_url}/users/{account['username']}"
        return account

    def _new_id(self) -> str:
        # Mastodon's ids: milliseconds since the epoch shifted 16 bits, plus a sequence in the low bits.
        self._last_id = max(self._last_id + 1, int(time.time() * 1000) << 16)
        return str(self._last_id)

    def _is_local(self, account: dict[str, Any]) -> bool:
        return "@" not in str(account.get("acct", ""))

    def _mention(self, user: str, domain: str | None) -> dict[str, Any] | None:
        acct = f"{user}@{domain}" if domain and domain != self.domain else user
        account = self.accounts.get(acct.lower())
        if account is None:
            return None
        return {"id": account["id"], "username": account["username"], "url": account["url"], "acct": account["acct"]}

    def _content(self, text: str, mentions: list[dict[str, Any]]) -> str:
        by_name = {m["acct"].lower(): m for m in mentions} | {m["username"].lower(): m for m in mentions}

        def mention(match: re.Match) -> str:
            found = by_name.get((f"{match[1]}@{match[2]}" if match[2] else match[1]).lower())
            if found is None:
                return match[0]
            return (f'<span class="h-card" translate="no"><a href="{found["url"]}" class="u-url mention">'
                    f'@<span>{found["username"]}</span></a></span>')

        def hashtag(match: re.Match) -> str:
            return (f'<a href="{self.base_url}/tags/{match[1].lower()}" class="mention hashtag" rel="tag">'
                    f'#<span>{match[1]}</span></a>')

        paragraphs = []
        for block in re.split(r"\n\s*\n", text.strip()):
            escaped = html.escape(block, quote=False)
            escaped = _MENTION.sub(mention, escaped)
            escaped = _HASHTAG.sub(hashtag, escaped)
            paragraphs.append("<p>" + escaped.replace("\n", "<br />") + "</p>")
        return "".join(paragraphs)

    def _status_build(self, *, text: str, account: dict[str, Any], visibility: str, in_reply_to_id: str | None,
                      language: str | None, spoiler_text: str = "", created_at: datetime | None = None) -> dict[str, Any]:
        status_id = self._new_id()
        status = copy.deepcopy(STATUS_TEMPLATE)
        mentions = []
        for user, domain in _MENTION.findall(text):
            found = self._mention(user, domain or None)
            if found is not None and found["id"] not in {m["id"] for m in mentions}:
                mentions.append(found)
        tags = []
        for name in _HASHTAG.findall(text):
            if name.lower() not in {t["name"] for t in tags}:
                tags.append({"name": name.lower(), "url": f"{self.base_url}/tags/{name.lower()}"})
        parent = self.statuses.get(in_reply_to_id) if in_reply_to_id else None
        web = str(account.get("url", "")).rsplit("/@", 1)[0] or self.base_url
        status.update({
            "id": status_id, "created_at": _iso(created_at or datetime.now(UTC)), "visibility": visibility,
            "language": language, "sensitive": bool(spoiler_text), "spoiler_text": spoiler_text,
            "in_reply_to_id": in_reply_to_id or None,
            "in_reply_to_account_id": parent["account"]["id"] if parent else None,
            "uri": f"{web}/users/{account.get('username')}/statuses/{status_id}",
            "url": f"{web}/@{account.get('username')}/{status_id}",
            "account": account, "mentions": mentions, "tags": tags, "content": self._content(text, mentions),
            "replies_count": 0, "reblogs_count": 0, "favourites_count": 0, "edited_at": None, "pinned": False,
            "application": {"name": "Tertulia sandbox", "website": None},
        })
        if parent is not None:
            parent["replies_count"] = int(parent.get("replies_count") or 0) + 1
        self._sources[status_id] = text
        return status

    def _deliver(self, status: dict[str, Any], *, notify: bool | None = None) -> None:
        """Store a status and put it where Mastodon would (called with the lock held)."""
        status_id = str(status["id"])
        self.statuses[status_id] = status
        account = status.get("account") or {}
        visibility = status.get("visibility")
        shown = status.get("reblog") or status
        # A boost has no tags of its own and stays out of public timelines, unless the server's admin
        # turned Mastodon's show_reblogs_in_public_timelines on.
        reblog_shown = bool(status.get("reblog")) and self.show_reblogs_in_public_timelines
        entry = _Entry(
            key=_key(status_id), payload=status, status_id=status_id,
            tags=frozenset(str(t.get("name", "")).lower()
                           for t in (shown if reblog_shown else status).get("tags") or []),
            public=visibility == "public" and (reblog_shown or not status.get("reblog")),
            local=self._is_local(account),
            reply=bool(status.get("in_reply_to_id")) and status.get("in_reply_to_account_id") != account.get("id"),
            searchable=(f"{shown.get('spoiler_text') or ''}\n{html_to_text(shown.get('content') or '')}".lower()
                        if visibility in ("public", "unlisted") and not status.get("reblog") else ""),
        )
        if visibility != "direct":
            self.timeline.append(entry)
        if entry.public:
            event = b"event: update\ndata: " + json.dumps(status, ensure_ascii=False).encode() + b"\n\n"
            for stream in self._streams:
                if stream.wants(entry) and not (stream.kind == "public" and entry.reply):
                    stream.events.put(event)
        mentioned = any(str(m.get("id")) == self.me["id"] or str(m.get("acct", "")).lower() == self.me["acct"].lower()
                        for m in status.get("mentions") or [])
        if (mentioned if notify is None else notify) and account.get("id") != self.me["id"]:
            self._notify("mention", account, status)

    def _notify(self, kind: str, account: dict[str, Any], status: dict[str, Any] | None) -> dict[str, Any]:
        self._last_notification += 1
        notification = copy.deepcopy(NOTIFICATION_TEMPLATE)
        notification_id = str(self._last_notification)
        notification.update({"id": notification_id, "type": kind, "created_at": _iso(datetime.now(UTC)),
                             "group_key": f"ungrouped-{notification_id}", "account": account, "status": status})
        if status is None:
            notification.pop("status", None)
        self.notifications.append(_Entry(key=_key(notification_id), payload=notification))
        return notification

    # --- requests -----------------------------------------------------------------------------------

    def _count(self, who: str) -> tuple[int, float]:
        """Count one request of `who` in its window; returns (remaining, reset epoch)."""
        moment = time.time()
        with self.lock:
            started, used = self._windows.get(who, (moment, 0))
            if moment - started >= self.rate_window:
                started, used = moment, 0
            used += 1
            self._windows[who] = (started, used)
        return self.rate_limit - used, started + self.rate_window

    def _scripted(self, path: str) -> _Failure | None:
        with self.lock:
            for index, failure in enumerate(self.scripted):
                if (path.startswith(failure.path) if failure.path is not None
                        else path.startswith("/api/") and not path.startswith(_INSTANCE_PATHS + ("/api/v1/streaming",))):
                    return self.scripted.pop(index)
        return None

    def _page(self, entries: list[_Entry], params: dict[str, list[str]], *, default: int, maximum: int) -> list[_Entry]:
        """Mastodon's id pagination: max_id (older than), since_id (newer than, newest first) and
        min_id (immediately newer than: the oldest ones after it), newest first in the answer."""
        limit = _int(params, "limit", default, 1, maximum)
        max_id, since_id, min_id = (_one(params, name) for name in ("max_id", "since_id", "min_id"))
        chosen = sorted(entries, key=lambda e: e.key, reverse=True)
        if max_id:
            chosen = [e for e in chosen if e.key < _key(max_id)]
        if since_id:
            chosen = [e for e in chosen if e.key > _key(since_id)]
        if min_id:
            chosen = [e for e in chosen if e.key > _key(min_id)]
            return list(reversed(list(reversed(chosen))[:limit]))
        return chosen[:limit]

    def _timeline_entries(self, *, tag: str | None, params: dict[str, list[str]]) -> list[_Entry]:
        local, remote = _flag(params, "local"), _flag(params, "remote")
        with self.lock:
            entries = list(self.timeline)
        chosen = []
        for entry in entries:
            if not entry.public or (local and not entry.local) or (remote and entry.local):
                continue
            if tag is not None and tag not in entry.tags:
                continue
            if tag is None and entry.reply:
                continue
            chosen.append(entry)
        return chosen
