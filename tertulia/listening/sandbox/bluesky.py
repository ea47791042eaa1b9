"""A local Bluesky: Jetstream over a real WebSocket and the XRPC API of a PDS/AppView, in Bluesky's wire formats.

Two servers, one state:

- **Jetstream** (`jetstream_url`, ws://host:port/subscribe): the v1 protocol. Query parameters
  `wantedCollections` (NSIDs or `prefix.*`), `wantedDids`, `cursor` (unix microseconds: replay every event
  from that time, then live; none: live only) and `compress` (only `false`: the sandbox does not speak
  zstd). One JSON text frame per event, exactly as the events were added: commits (create, update,
  delete of any collection), identity and account events; identity and account events reach every
  subscriber whatever its collections, as on Jetstream. A subscriber may send an `options_update`.
- **XRPC** (`base_url`, http://host:port/xrpc/<nsid>): com.atproto.server.createSession and
  refreshSession (HS256 JWTs, as the reference PDS signs them; refresh tokens are single use),
  app.bsky.feed.searchPosts, app.bsky.notification.listNotifications (mention, reply, quote),
  app.bsky.actor.getProfile(s), com.atproto.repo.createRecord and getRecord. Errors are XRPC bodies
  `{"error", "message"}`; every answer carries RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset
  (unix seconds) and RateLimit-Policy, and a spent budget answers 429 RateLimitExceeded, as Bluesky does
  (3000 requests per 5 minutes; createSession 30 per 5 minutes per account).

`add_post(...)` publishes a post as someone: it goes to the firehose (with its time_us), the search index
and, when it mentions, answers or quotes the store's account, to the account's notifications.
`add_raw_event(line)` puts any text on the firehose (captured events, broken ones). What the store posts
through createRecord is kept in `posted` and published like any other post, so answers to it can follow.
Scripted failures: `fail_next(...)`, `expire_access_tokens()`, `refuse_subscriptions`, `hang_up()`.
"""

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from tertulia.listening.sandbox import SandboxHTTPServer

POST = "app.bsky.feed.post"
_S32 = "234567abcdefghijklmnopqrstuvwxyz"
_TID_FIRST = set("234567abcdefghij")
DEFAULT_HANDLE = "latertulia.bsky.social"
DEFAULT_APP_PASSWORD = "abcd-efgh-ijkl-mnop"  # noqa: S105 - the sandbox's own; app passwords look like this


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def tid(timestamp_us: int, clock_id: int = 0) -> str:
    value = ((timestamp_us & ((1 << 53) - 1)) << 10) | (clock_id & 1023)
    return "".join(_S32[(value >> (5 * shift)) & 31] for shift in range(12, -1, -1))


def is_tid(value: str) -> bool:
    return len(value) == 13 and value[0] in _TID_FIRST and all(char in _S32 for char in value)


def cid_for(data: Any) -> str:
    """A syntactically real CIDv1 (dag-cbor, sha2-256) over the JSON of `data`: stable and unique per content."""
    digest = hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).digest()
    return "b" + base64.b32encode(bytes([0x01, 0x71, 0x12, 0x20]) + digest).decode().lower().rstrip("=")


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _parse_moment(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        try:
            moment = datetime.fromisoformat(f"{value}T00:00:00+00:00")  # since/until may be a bare date
        except (TypeError, ValueError):
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class XrpcError(Exception):
    def __init__(self, status: int, error: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.headers = status, error, message, headers or {}


@dataclass(slots=True)
class _Event:
    seq: int
    time_us: int
    raw: str
    did: str = ""
    kind: str = ""
    collection: str = ""


@dataclass(slots=True)
class _Filter:
    collections: list[str] = field(default_factory=list)
    dids: set[str] = field(default_factory=set)

    def wants(self, event: _Event) -> bool:
        if not event.kind:
            return True  # not JSON we can read (a broken line someone put on the stream): everyone gets it
        if self.dids and event.did not in self.dids:
            return False
        if not self.collections or event.kind != "commit":
            return True  # identity and account events bypass the collection filter (Jetstream v1)
        return any(event.collection == wanted or (wanted.endswith(".*") and event.collection.startswith(wanted[:-1]))
                   for wanted in self.collections)


@dataclass(slots=True)
class _Subscriber:
    filter: _Filter
    hang_up: int = 0  # the close code to hang up with, once the events added before are sent


@dataclass(slots=True)
class _Failure:
    nsid: str | None
    status: int
    error: str
    message: str
    headers: dict[str, str]
    times: int
    after: bool  # do the work, then answer the failure (a response lost on the way back)


class _XrpcHandler(BaseHTTPRequestHandler):
    sandbox: "BlueskySandbox"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not parts.path.startswith("/xrpc/"):
            self._answer(404, {"error": "NotFound", "message": "Not Found"}, {})
            return
        body: Any = None
        if raw:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                self._answer(400, {"error": "InvalidRequest", "message": "Invalid JSON body"}, {})
                return
        status, answer, headers = self.sandbox.handle_xrpc(
            method=method, nsid=parts.path[len("/xrpc/"):], params=parse_qs(parts.query), body=body,
            authorization=self.headers.get("Authorization") or "")
        self._answer(status, answer, headers)

    def _answer(self, status: int, answer: dict[str, Any], headers: dict[str, str]) -> None:
        data = orjson.dumps(answer)
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self._serve("POST")


class BlueskySandbox(SandboxHTTPServer):
    """The whole local Bluesky; `base_url` is the XRPC service, `jetstream_url` the firehose."""

    handler_class = _XrpcHandler

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, jetstream_port: int = 0,
                 handle: str = DEFAULT_HANDLE, did: str | None = None, app_password: str = DEFAULT_APP_PASSWORD,
                 display_name: str = "La Tertulia", followers: int = 1200, rate_limit: int = 3000,
                 rate_window: float = 300.0, session_limit: int = 30, access_lifetime: float = 7200.0) -> None:
        super().__init__(host=host, port=port)
        self._secret = secrets.token_bytes(32)
        self._cond = threading.Condition(self.lock)
        self.accounts: dict[str, dict[str, Any]] = {}
        self._handles: dict[str, str] = {}
        self.account = self.add_account(handle=handle, did=did, display_name=display_name, followers=followers)
        self.app_passwords = {app_password}
        self.rate_limit, self.rate_window = rate_limit, rate_window
        self.session_limit, self.access_lifetime = session_limit, access_lifetime
        self._window_start, self._window_used = time.time(), 0
        self._session_windows: dict[str, tuple[float, int]] = {}
        self._refresh_ids: set[str] = set()
        self._issued: list[str] = []  # access tokens handed out (expire_access_tokens expires them)
        self._expired: set[str] = set()
        self._rkeys = 0
        self._events: list[_Event] = []
        self._seq = 0
        self._last_time_us = 0
        self._subscribers: list[_Subscriber] = []
        self._records: dict[str, dict[str, Any]] = {}  # uri -> {"uri", "cid", "did", "record", "indexed_at", ...}
        self._notifications: list[dict[str, Any]] = []
        self._failures: list[_Failure] = []
        self.posted: list[dict[str, Any]] = []  # what the store created: {"uri", "cid", "rkey", "record"}
        self.requests: list[dict[str, Any]] = []  # every XRPC call: {"method", "nsid", "params", "body", "auth"}
        self.subscriptions: list[dict[str, Any]] = []  # every Jetstream connection's query parameters
        self.subscribed = threading.Event()  # set when a subscriber has had its replay
        self.refuse_subscriptions = 0  # Jetstream answers the next N handshakes with 503
        self._jetstream: Server = serve(self._subscribe, host, jetstream_port, process_request=self._handshake,
                                        compression=None)
        self._jetstream_thread = threading.Thread(target=self._jetstream.serve_forever, daemon=True,
                                                  name="sandbox-jetstream")

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def jetstream_url(self) -> str:
        host, port = self._jetstream.socket.getsockname()[:2]
        return f"ws://{host}:{port}/subscribe"

    @property
    def handle(self) -> str:
        return self.account["handle"]

    @property
    def did(self) -> str:
        return self.account["did"]

    def start(self) -> "BlueskySandbox":
        super().start()
        self._jetstream_thread.start()
        return self

    def stop(self) -> None:
        self.hang_up()
        self._jetstream.shutdown()
        super().stop()

    # --- what a demo or a test puts in -------------------------------------------------------

    def add_account(self, *, handle: str, did: str | None = None, display_name: str = "", followers: int = 0,
                    follows: int = 0) -> dict[str, Any]:
        did = did or "did:plc:" + hashlib.sha256(handle.encode()).hexdigest()[:24]
        with self.lock:
            account = self.accounts.get(did)
            if account is None:
                account = {"did": did, "handle": handle, "displayName": display_name, "followersCount": followers,
                           "followsCount": follows, "postsCount": 0, "createdAt": "2024-03-01T09:00:00.000Z",
                           "indexedAt": "2024-03-01T09:00:00.000Z"}
                self.accounts[did] = account
            else:
                account.update({"handle": handle, "displayName": display_name or account["displayName"],
                                "followersCount": followers or account["followersCount"]})
            self._handles[handle.lower()] = did
        return account

    def add_post(self, *, text: str, did: str | None = None, handle: str | None = None, display_name: str = "",
                 langs: Sequence[str] = ("es",), reply: dict[str, Any] | None = None,
                 quote: dict[str, Any] | None = None, at: datetime | None = None, followers: int = 0,
                 likes: int = 0, facets: list[dict[str, Any]] | None = None, firehose: bool = True,
                 time_us: int | None = None) -> dict[str, Any]:
        """Publish a post; returns {"uri", "cid", "did", "handle", "rkey", "time_us", "record"}.

        `at` is the post's createdAt (default now); `time_us` when Jetstream saw it (default: now, after
        every event so far), which is what cursors count in. `reply` is a post this answers (what add_post
        returned, or {"uri", "cid"}); its thread root follows. Mention facets are added for every @handle
        of a known account in the text, as clients do.
        """
        if did is None and handle is None:
            handle = "ana.bsky.social"
        if did is not None and handle is None:
            handle = self.accounts[did]["handle"] if did in self.accounts else f"{did.rsplit(':', 1)[-1][:8]}.bsky.social"
        account = self.add_account(handle=handle or "", did=did or self._handles.get((handle or "").lower()),
                                   display_name=display_name, followers=followers)
        moment = at or datetime.now(UTC)
        record: dict[str, Any] = {"$type": POST, "createdAt": iso(moment), "langs": list(langs), "text": text}
        if reply is not None:
            record["reply"] = self._reply_refs(reply)
        found = self._facets(text) if facets is None else facets
        if found:
            record["facets"] = found
        if quote is not None:
            record["embed"] = {"$type": "app.bsky.embed.record", "record": {"uri": quote["uri"], "cid": quote["cid"]}}
        return self._publish(account["did"], record, at=moment, likes=likes, firehose=firehose, time_us=time_us)

    def add_raw_event(self, raw: str, *, at: datetime | None = None) -> int:
        """Put one line on the firehose as it is; its time_us (if it has one) places it for replays."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        with self._cond:
            if isinstance(data, dict) and isinstance(data.get("time_us"), int) and at is None:
                time_us = data["time_us"]
            else:
                time_us = self._next_time_us(at)
            self._append(raw, time_us, data if isinstance(data, dict) else None)
        return time_us

    def add_notification_raw(self, item: dict[str, Any]) -> None:
        """A notification exactly as given (a broken one, an unusual reason), newest first like the others."""
        with self.lock:
            self._notifications.insert(0, item)

    def fail_next(self, nsid: str | None = None, *, status: int = 500, error: str = "InternalServerError",
                  message: str = "Internal Server Error", headers: dict[str, str] | None = None, times: int = 1,
                  after: bool = False) -> None:
        """The next `times` calls of `nsid` (any method when None) answer this error; `after`: do the work first."""
        with self.lock:
            self._failures.append(_Failure(nsid, status, error, message, dict(headers or {}), times, after))

    def exhaust_rate_limit(self) -> None:
        with self.lock:
            self._window_start, self._window_used = time.time(), self.rate_limit

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is expired from now on (the server says ExpiredToken)."""
        with self.lock:
            self._expired.update(self._issued)
            self._issued.clear()

    def hang_up(self, code: int = 1001) -> None:
        """Close every Jetstream connection (after the events already added): 1001 is a server going away
        politely, 1011 one that failed."""
        with self._cond:
            for subscriber in self._subscribers:
                subscriber.hang_up = code
            self._cond.notify_all()

    def post(self, uri: str) -> dict[str, Any] | None:
        with self.lock:
            return self._records.get(uri)

    # --- publishing --------------------------------------------------------------------------

    def _next_time_us(self, at: datetime | None) -> int:
        # Called with the lock held. Jetstream stamps events as they arrive: later than every one so far.
        if at is not None:
            return _micros(at)
        return max(_micros(datetime.now(UTC)), self._last_time_us + 1)

    def _append(self, raw: str, time_us: int, data: dict[str, Any] | None) -> None:
        # Called with the lock held.
        self._seq += 1
        commit = data.get("commit") if data else None
        event = _Event(seq=self._seq, time_us=time_us, raw=raw, did=str(data.get("did") or "") if data else "",
                       kind=str(data.get("kind") or "") if data else "",
                       collection=str(commit.get("collection") or "") if isinstance(commit, dict) else "")
        self._events.append(event)
        self._last_time_us = max(self._last_time_us, time_us)
        self._cond.notify_all()

    def _reply_refs(self, reply: dict[str, Any]) -> dict[str, Any]:
        parent = {"uri": reply["uri"], "cid": reply["cid"]}
        with self.lock:
            known = self._records.get(reply["uri"])
        root = (known["record"].get("reply") or {}).get("root") if known else None
        if root is None and isinstance(reply.get("record"), dict):
            root = (reply["record"].get("reply") or {}).get("root")
        return {"parent": parent, "root": dict(root) if root else dict(parent)}

    def _facets(self, text: str) -> list[dict[str, Any]]:
        facets = []
        with self.lock:
            for handle, did in self._handles.items():
                needle = f"@{handle}"
                start = text.lower().find(needle)
                if start < 0:
                    continue
                end = start + len(needle)
                if end < len(text) and (text[end].isalnum() or text[end] in ".-_"):
                    continue
                byte_start = len(text[:start].encode())
                facets.append({"index": {"byteStart": byte_start, "byteEnd": byte_start + len(needle.encode())},
                               "features": [{"$type": "app.bsky.richtext.facet#mention", "did": did}]})
        return sorted(facets, key=lambda f: f["index"]["byteStart"])

    def _publish(self, did: str, record: dict[str, Any], *, at: datetime, likes: int = 0, firehose: bool = True,
                 rkey: str | None = None, time_us: int | None = None) -> dict[str, Any]:
        with self._cond:
            time_us = time_us if time_us is not None else self._next_time_us(None)
            self._rkeys += 1
            rkey = rkey or tid(_micros(at), self._rkeys % 1024)
            uri = f"at://{did}/{record.get('$type') or POST}/{rkey}"
            cid = cid_for({"uri": uri, "record": record})
            account = self.accounts[did]
            indexed = datetime.now(UTC)
            entry = {"uri": uri, "cid": cid, "did": did, "rkey": rkey, "record": record, "indexed_at": iso(indexed),
                     "sort_at": min(at, indexed), "time_us": time_us, "likes": likes, "replies": 0, "reposts": 0,
                     "quotes": 0}
            self._records[uri] = entry
            account["postsCount"] += 1
            parent = ((record.get("reply") or {}).get("parent") or {}).get("uri")
            if parent in self._records:
                self._records[parent]["replies"] += 1
            if firehose:
                event = {"did": did, "time_us": time_us, "kind": "commit",
                         "commit": {"rev": tid(time_us, 7), "operation": "create", "collection": POST,
                                    "rkey": rkey, "record": record, "cid": cid}}
                self._append(orjson.dumps(event).decode(), time_us, event)
            self._notify_store(entry)
            handle = account["handle"]
        return {"uri": uri, "cid": cid, "did": did, "handle": handle, "rkey": rkey, "time_us": time_us,
                "record": record}

    def _notify_store(self, entry: dict[str, Any]) -> None:
        # Called with the lock held: a post by someone else that is addressed to the store's account.
        store = self.account["did"]
        if entry["did"] == store:
            return
        record = entry["record"]
        reason, subject = "", None
        parent = ((record.get("reply") or {}).get("parent") or {}).get("uri") or ""
        quoted = ((record.get("embed") or {}).get("record") or {}).get("uri") or ""
        if parent.startswith(f"at://{store}/"):
            reason, subject = "reply", parent
        elif quoted.startswith(f"at://{store}/"):
            reason, subject = "quote", quoted
        elif any(feature.get("did") == store for facet in record.get("facets") or []
                 for feature in facet.get("features") or []):
            reason = "mention"
        if not reason:
            return
        item = {"uri": entry["uri"], "cid": entry["cid"], "author": self._profile_view(entry["did"]),
                "reason": reason, "record": record, "isRead": False, "indexedAt": entry["indexed_at"], "labels": []}
        if subject:
            item["reasonSubject"] = subject
        self._notifications.insert(0, item)

    # --- views (lexicon shapes) ----------------------------------------------------------------

    def _profile_basic(self, did: str) -> dict[str, Any]:
        account = self.accounts[did]
        view = {"did": did, "handle": account["handle"], "associated": {"activitySubscription": {
            "allowSubscriptions": "followers"}}, "viewer": {"muted": False, "blockedBy": False}, "labels": [],
            "createdAt": account["createdAt"]}
        if account["displayName"]:
            view["displayName"] = account["displayName"]
        return view

    def _profile_view(self, did: str) -> dict[str, Any]:
        return {**self._profile_basic(did), "indexedAt": self.accounts[did]["indexedAt"]}

    def _profile_detailed(self, did: str) -> dict[str, Any]:
        account = self.accounts[did]
        return {**self._profile_view(did), "followersCount": account["followersCount"],
                "followsCount": account["followsCount"], "postsCount": account["postsCount"], "description": ""}

    def _post_view(self, entry: dict[str, Any]) -> dict[str, Any]:
        return {"uri": entry["uri"], "cid": entry["cid"], "author": self._profile_basic(entry["did"]),
                "record": entry["record"], "bookmarkCount": 0, "replyCount": entry["replies"],
                "repostCount": entry["reposts"], "likeCount": entry["likes"], "quoteCount": entry["quotes"],
                "indexedAt": entry["indexed_at"], "viewer": {"bookmarked": False, "threadMuted": False,
                                                             "embeddingDisabled": False}, "labels": []}

    # --- Jetstream -----------------------------------------------------------------------------

    def _handshake(self, connection: ServerConnection, request):
        query = parse_qs(urlsplit(request.path).query)
        if urlsplit(request.path).path.rstrip("/") != "/subscribe":
            return connection.respond(404, "Not Found\n")
        with self.lock:
            if self.refuse_subscriptions:
                self.refuse_subscriptions -= 1
                return connection.respond(503, "Service Unavailable\n")
        if (query.get("compress") or ["false"])[0].lower() == "true":
            return connection.respond(400, "The sandbox does not compress (compress=false).\n")
        cursor = (query.get("cursor") or [""])[0]
        if cursor and not cursor.lstrip("-").isdigit():
            return connection.respond(400, "cursor must be unix microseconds\n")
        if len(query.get("wantedCollections") or []) > 100 or len(query.get("wantedDids") or []) > 10_000:
            return connection.respond(400, "at most 100 wantedCollections and 10,000 wantedDids\n")
        return None

    def _subscribe(self, connection: ServerConnection) -> None:
        query = parse_qs(urlsplit(connection.request.path).query)
        subscriber = _Subscriber(_Filter(collections=list(query.get("wantedCollections") or []),
                                         dids=set(query.get("wantedDids") or [])))
        raw_cursor = (query.get("cursor") or [""])[0]
        cursor = int(raw_cursor) if raw_cursor else None
        with self._cond:
            self.subscriptions.append({"wantedCollections": subscriber.filter.collections,
                                       "wantedDids": sorted(subscriber.filter.dids), "cursor": cursor,
                                       "compress": (query.get("compress") or [""])[0]})
            # A cursor replays everything from that time (in time order); then what arrives, as it arrives.
            backlog = sorted((e for e in self._events if e.time_us >= cursor), key=lambda e: (e.time_us, e.seq)) \
                if cursor is not None else []
            sent_seq = self._seq
            self._subscribers.append(subscriber)
        try:
            for event in backlog:
                if subscriber.filter.wants(event):
                    connection.send(event.raw)
            self.subscribed.set()
            while True:
                with self._cond:
                    if sent_seq == self._seq and not subscriber.hang_up:
                        self._cond.wait(0.05)
                    fresh = [e for e in self._events if e.seq > sent_seq]
                    hang_up = subscriber.hang_up
                for event in fresh:
                    sent_seq = max(sent_seq, event.seq)
                    if subscriber.filter.wants(event):
                        connection.send(event.raw)
                if hang_up:
                    connection.close(hang_up, "going away" if hang_up == 1001 else "internal error")
                    return
                if not self._read_options(connection, subscriber):
                    return
        except ConnectionClosed:
            return
        finally:
            with self._cond:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

    def _read_options(self, connection: ServerConnection, subscriber: _Subscriber) -> bool:
        """Apply an options_update the subscriber sent; False when the connection is over."""
        try:
            message = connection.recv(timeout=0)
        except TimeoutError:
            return True
        try:
            data = orjson.loads(message)
            payload = data["payload"] if data.get("type") == "options_update" else None
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
            connection.close(1008, "invalid subscriber message")
            return False
        if isinstance(payload, dict):
            subscriber.filter = _Filter(collections=list(payload.get("wantedCollections") or []),
                                        dids=set(payload.get("wantedDids") or []))
        return True  # other message types are ignored, as Jetstream does

    # --- XRPC ----------------------------------------------------------------------------------

    def _rate_headers(self, now: float) -> dict[str, str]:
        reset = int(self._window_start + self.rate_window)
        return {"RateLimit-Limit": str(self.rate_limit),
                "RateLimit-Remaining": str(max(self.rate_limit - self._window_used, 0)),
                "RateLimit-Reset": str(reset), "RateLimit-Policy": f"{self.rate_limit};w={int(self.rate_window)}"}

    def handle_xrpc(self, *, method: str, nsid: str, params: dict[str, list[str]], body: Any,
                    authorization: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        now = time.time()
        with self.lock:
            self.requests.append({"method": method, "nsid": nsid, "params": params, "body": body,
                                  "auth": authorization[:7]})
            if now - self._window_start >= self.rate_window:
                self._window_start, self._window_used = now, 0
            if self._window_used >= self.rate_limit:
                return 429, {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}, self._rate_headers(now)
            self._window_used += 1
            headers = self._rate_headers(now)
            failure = next((f for f in self._failures if f.nsid in (None, nsid)), None)
            if failure is not None:
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
        if failure is not None and not failure.after:
            return failure.status, {"error": failure.error, "message": failure.message}, headers | failure.headers
        try:
            status, answer = self._call(method, nsid, params, body, authorization)
        except XrpcError as exc:
            status, answer, headers = exc.status, {"error": exc.error, "message": exc.message}, headers | exc.headers
        if failure is not None:
            return failure.status, {"error": failure.error, "message": failure.message}, headers | failure.headers
        return status, answer, headers

    def _call(self, method: str, nsid: str, params: dict[str, list[str]], body: Any,
              authorization: str) -> tuple[int, dict[str, Any]]:
        routes = {
            "com.atproto.server.createSession": ("POST", self._create_session),
            "com.atproto.server.refreshSession": ("POST", self._refresh_session),
            "app.bsky.feed.searchPosts": ("GET", self._search_posts),
            "app.bsky.notification.listNotifications": ("GET", self._list_notifications),
            "app.bsky.actor.getProfile": ("GET", self._get_profile),
            "app.bsky.actor.getProfiles": ("GET", self._get_profiles),
            "com.atproto.repo.createRecord": ("POST", self._create_record),
            "com.atproto.repo.getRecord": ("GET", self._get_record),
        }
        route = routes.get(nsid)
        if route is None:
            raise XrpcError(501, "MethodNotImplemented", "Method Not Implemented")
        if route[0] != method:
            raise XrpcError(400, "InvalidRequest", f"Incorrect HTTP method ({method}) expected {route[0]}")
        if method == "POST" and nsid != "com.atproto.server.refreshSession" and not isinstance(body, dict):
            raise XrpcError(400, "InvalidRequest", "Request encoding (Content-Type) required but not provided")
        return 200, route[1](params=params, body=body, authorization=authorization)

    # Tokens.

    def _jwt(self, header: dict[str, Any], payload: dict[str, Any]) -> str:
        signing = f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(payload))}"
        signature = hmac.new(self._secret, signing.encode(), hashlib.sha256).digest()
        return f"{signing}.{_b64(signature)}"

    def _decode(self, authorization: str, *, typ: str) -> dict[str, Any]:
        scheme, _sep, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise XrpcError(401, "AuthenticationRequired", "Authentication Required")
        try:
            header_part, payload_part, signature = token.split(".")
            header = orjson.loads(_unb64(header_part))
            payload = orjson.loads(_unb64(payload_part))
            expected = hmac.new(self._secret, f"{header_part}.{payload_part}".encode(), hashlib.sha256).digest()
        except (ValueError, orjson.JSONDecodeError):
            raise XrpcError(400, "InvalidToken", "Token could not be verified") from None
        if not hmac.compare_digest(expected, _unb64(signature)) or header.get("typ") != typ:
            raise XrpcError(400, "InvalidToken", "Token could not be verified")
        with self.lock:
            expired = token in self._expired
        if expired or payload.get("exp", 0) <= time.time():
            raise XrpcError(400, "ExpiredToken", "Token has expired")
        return payload

    def _viewer(self, authorization: str, *, required: bool = True) -> str | None:
        if not authorization and not required:
            return None
        return str(self._decode(authorization, typ="at+jwt")["sub"])

    def _session_answer(self, did: str) -> dict[str, Any]:
        now = int(time.time())
        jti = secrets.token_urlsafe(16)
        with self.lock:
            self._refresh_ids.add(jti)
        audience = f"did:web:{self.server.server_address[0]}"
        access = self._jwt({"typ": "at+jwt", "alg": "HS256"},
                           {"scope": "com.atproto.appPass", "sub": did, "aud": audience, "iat": now,
                            "exp": now + int(self.access_lifetime),
                            # Not in the reference PDS's tokens: keeps two issued in one second apart.
                            "jti": secrets.token_urlsafe(8)})
        refresh = self._jwt({"typ": "refresh+jwt", "alg": "HS256"},
                            {"scope": "com.atproto.refresh", "sub": did, "aud": audience, "jti": jti, "iat": now,
                             "exp": now + 90 * 86400})
        with self.lock:
            self._issued.append(access)
        return {"accessJwt": access, "refreshJwt": refresh, "handle": self.accounts[did]["handle"], "did": did,
                "email": "tienda@example.com", "emailConfirmed": True, "emailAuthFactor": False, "active": True}

    def _create_session(self, *, params, body, authorization) -> dict[str, Any]:
        identifier = str(body.get("identifier") or "").lower().lstrip("@")
        password = body.get("password")
        if not identifier or not isinstance(password, str):
            raise XrpcError(400, "InvalidRequest", 'Input must have the property "identifier"')
        now = time.time()
        with self.lock:
            start, used = self._session_windows.get(identifier, (now, 0))
            if now - start >= 300:
                start, used = now, 0
            if used >= self.session_limit:
                raise XrpcError(429, "RateLimitExceeded", "Rate Limit Exceeded", {
                    "RateLimit-Limit": str(self.session_limit), "RateLimit-Remaining": "0",
                    "RateLimit-Reset": str(int(start + 300)), "RateLimit-Policy": f"{self.session_limit};w=300"})
            self._session_windows[identifier] = (start, used + 1)
            did = identifier if identifier in self.accounts else self._handles.get(identifier)
        if did != self.account["did"] or password not in self.app_passwords:
            raise XrpcError(401, "AuthenticationRequired", "Invalid identifier or password")
        return self._session_answer(did)

    def _refresh_session(self, *, params, body, authorization) -> dict[str, Any]:
        payload = self._decode(authorization, typ="refresh+jwt")
        with self.lock:
            if payload.get("jti") not in self._refresh_ids:
                raise XrpcError(400, "ExpiredToken", "Token has been revoked")
            self._refresh_ids.discard(payload["jti"])
        return self._session_answer(str(payload["sub"]))

    # Reads.

    def _search_posts(self, *, params, body, authorization) -> dict[str, Any]:
        self._viewer(authorization, required=False)
        q = (params.get("q") or [""])[0].strip()
        if not q:
            raise XrpcError(400, "InvalidRequest", 'Params must have the property "q"')
        limit = _limit(params, default=25, top=100)
        since = _parse_moment((params.get("since") or [""])[0]) if params.get("since") else None
        until = _parse_moment((params.get("until") or [""])[0]) if params.get("until") else None
        words = _words(q) - {"and"}
        with self.lock:
            hits = [e for e in self._records.values() if words <= _words(e["record"].get("text", ""))
                    and (since is None or e["sort_at"] >= since) and (until is None or e["sort_at"] < until)]
            hits.sort(key=lambda e: (e["sort_at"], e["uri"]), reverse=True)
            offset = int((params.get("cursor") or ["0"])[0] or 0)
            page = hits[offset:offset + limit]
            answer: dict[str, Any] = {"posts": [self._post_view(e) for e in page], "hitsTotal": len(hits)}
        if offset + limit < len(hits):
            answer["cursor"] = str(offset + limit)
        return answer

    def _list_notifications(self, *, params, body, authorization) -> dict[str, Any]:
        viewer = self._viewer(authorization)
        if viewer != self.account["did"]:
            return {"notifications": []}
        reasons = set(params.get("reasons") or [])
        limit = _limit(params, default=50, top=100)
        with self.lock:
            items = [n for n in self._notifications if not reasons or n.get("reason") in reasons]
            offset = int((params.get("cursor") or ["0"])[0] or 0)
            page = items[offset:offset + limit]
            answer: dict[str, Any] = {"notifications": [dict(n) for n in page], "priority": False}
        if offset + limit < len(items):
            answer["cursor"] = str(offset + limit)
        return answer

    def _actor(self, actor: str) -> str:
        actor = actor.lower().lstrip("@")
        did = actor if actor in self.accounts else self._handles.get(actor)
        if did is None:
            raise XrpcError(400, "InvalidRequest", "Profile not found")
        return did

    def _get_profile(self, *, params, body, authorization) -> dict[str, Any]:
        self._viewer(authorization, required=False)
        with self.lock:
            return self._profile_detailed(self._actor((params.get("actor") or [""])[0]))

    def _get_profiles(self, *, params, body, authorization) -> dict[str, Any]:
        self._viewer(authorization, required=False)
        actors = params.get("actors") or []
        if len(actors) > 25:
            raise XrpcError(400, "InvalidRequest", "Array must have at most 25 items")
        with self.lock:
            found = []
            for actor in actors:
                try:
                    found.append(self._profile_detailed(self._actor(actor)))
                except XrpcError:
                    continue  # unknown or deleted accounts are left out, as the AppView does
        return {"profiles": found}

    def _get_record(self, *, params, body, authorization) -> dict[str, Any]:
        repo = (params.get("repo") or [""])[0]
        collection = (params.get("collection") or [""])[0]
        rkey = (params.get("rkey") or [""])[0]
        with self.lock:
            did = repo if repo in self.accounts else self._handles.get(repo.lower(), repo)
            entry = self._records.get(f"at://{did}/{collection}/{rkey}")
        if entry is None:
            raise XrpcError(400, "RecordNotFound", f"Could not locate record: at://{did}/{collection}/{rkey}")
        return {"uri": entry["uri"], "cid": entry["cid"], "value": entry["record"]}

    # Writes.

    def _create_record(self, *, params, body, authorization) -> dict[str, Any]:
        viewer = self._viewer(authorization)
        repo = str(body.get("repo") or "")
        if repo not in (viewer, self.accounts.get(viewer, {}).get("handle")):
            raise XrpcError(401, "AuthenticationRequired", "Authentication Required")
        collection, record, rkey = body.get("collection"), body.get("record"), body.get("rkey")
        if collection != POST:
            raise XrpcError(400, "InvalidRequest", f"The sandbox only creates {POST} records")
        if not isinstance(record, dict):
            raise XrpcError(400, "InvalidRequest", 'Input must have the property "record"')
        record = {"$type": POST, **record}
        problem = _post_problem(record)
        if problem:
            raise XrpcError(400, "InvalidRequest", f"Invalid {POST} record: {problem}")
        if rkey is not None and (not isinstance(rkey, str) or not is_tid(rkey)):
            raise XrpcError(400, "InvalidRequest", f"Invalid {POST} record: Record key must be a TID")
        with self.lock:
            exists = rkey is not None and f"at://{viewer}/{POST}/{rkey}" in self._records
        if exists:
            # What the reference PDS answers today (bluesky-social/atproto#3718).
            raise XrpcError(500, "InternalServerError", "Internal Server Error")
        moment = _parse_moment(record["createdAt"]) or datetime.now(UTC)
        created = self._publish(str(viewer), record, at=min(moment, datetime.now(UTC)), rkey=rkey)
        with self.lock:
            self.posted.append({"uri": created["uri"], "cid": created["cid"], "rkey": created["rkey"],
                                "record": record})
        return {"uri": created["uri"], "cid": created["cid"],
                "commit": {"cid": cid_for({"commit": created["uri"]}), "rev": tid(created["time_us"], 3)},
                "validationStatus": "valid"}


def _words(text: str) -> set[str]:
    """Search tokens: lower-case words, hashtags without their #, handles split at their dots."""
    return {word for word in re.split(r"[^\w]+", text.lower()) if word}


def _limit(params: dict[str, list[str]], *, default: int, top: int) -> int:
    raw = (params.get("limit") or [str(default)])[0]
    if not raw.isdigit() or not 1 <= int(raw) <= top:
        raise XrpcError(400, "InvalidRequest", f"limit must be between 1 and {top}")
    return int(raw)


def _post_problem(record: dict[str, Any]) -> str:
    text = record.get("text")
    if not isinstance(text, str):
        return 'Record must have the property "text"'
    if len(text.encode()) > 3000 or len(text) > 300:
        return "Record/text must not be longer than 300 graphemes"
    if not isinstance(record.get("createdAt"), str) or _parse_moment(record["createdAt"]) is None:
        return 'Record must have the property "createdAt"'
    reply = record.get("reply")
    if reply is not None:
        for part in ("root", "parent"):
            ref = reply.get(part) if isinstance(reply, dict) else None
            if not isinstance(ref, dict) or not isinstance(ref.get("uri"), str) or not isinstance(ref.get("cid"), str):
                return f'Record/reply/{part} must have the properties "uri" and "cid"'
    return ""


def golden_lines(path: str) -> Iterable[str]:
    """The lines of a captured Jetstream file (one event per line), without their line ends."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield line.rstrip("\n")
