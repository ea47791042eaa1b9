"""The RSS/Atom connector: polls one feed (a blog, a forum, a news search) with conditional GETs, via feedparser.

We fetch with `requests` ourselves, so timeouts, the body size cap and status codes are ours, and hand
feedparser only the bytes. The cursor keeps the feed's validators (`etag`, `modified`): a feed that did not
change answers 304 and costs one empty response. It also keeps digests of the entry ids seen recently
(bounded), so an entry that stays in the feed for weeks is handed over once; Mention's unique key catches
whatever slips through (a feed that reorders ids, a cursor reset).

What the feed says, and what happens:
- 200: entries become posts (network "rss", kind "post": kept only when they name a tracked term);
  a feed with XML errors that still parsed (feedparser's "bozo") is stored with a warning in the cursor;
- 304: nothing new; 429, or 503 with Retry-After: RateLimited for as long as it says;
- 401/403: AuthFailed (a private feed: the `authorization` secret is missing or refused);
- 410 Gone: a permanent ConnectorError (the feed will not come back); other 4xx: permanent, 5xx: retried;
- a body that is not a feed at all (an HTML page, garbage): kept as malformed and counted; the session
  still succeeds until UNREADABLE_LIMIT polls in a row were unreadable, then each one is a failure, so the
  source shows as failing and the connector-down alert opens.
"""

import hashlib
import io
import logging
import re
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import feedparser
import orjson
import requests
from django.utils import timezone

from tertulia.core.errors import ErrorDetail
from tertulia.listening.connectors.base import (
    AuthFailed,
    ConnectorError,
    Post,
    RateLimited,
    SourceSpec,
    html_to_text,
)

log = logging.getLogger("tertulia.listening")

# A feed has no documented request budget: one request per poll, and the poll interval (at least a minute,
# a quarter of an hour by default) is the politeness.
SPEC = SourceSpec(
    settings={"url": str, "poll_seconds": (int, float), "timeout": (int, float)},
    required_settings=frozenset({"url"}),
    # A private feed (a members' forum) takes an Authorization header; it is a credential, so a secret.
    secrets=frozenset({"authorization"}),
    poll_seconds=900.0,
    min_poll_seconds=60.0,
)
DEFAULT_TIMEOUT = 20.0
MAX_BYTES = 5 * 1024 * 1024
MAX_TEXT = 20_000
SEEN_MAX = 500  # entry ids remembered; a feed carrying more than this keeps all of its current ones
UNREADABLE_LIMIT = 3
DEFAULT_RETRY_AFTER = 600.0
MAX_RETRY_AFTER = 86400.0
USER_AGENT = "Tertulia feed reader/1.0"
ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.1"
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def validate(settings: dict[str, Any], secrets: dict[str, Any]) -> list[ErrorDetail]:
    problems = []
    parts = urlsplit(settings.get("url") or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(ErrorDetail(field="settings.url", code="invalid", message="An http:// or https:// address."))
    timeout = settings.get("timeout")
    if timeout is not None and not 1 <= timeout <= 120:
        problems.append(ErrorDetail(field="settings.timeout", code="invalid", message="Between 1 and 120 seconds."))
    return problems


def build(config) -> "FeedConnector":
    return FeedConnector(config)


def _digest(value: str) -> str:
    return hashlib.blake2b(value.encode(), digest_size=8).hexdigest()


def retry_after_seconds(value: str | None, *, default: float = DEFAULT_RETRY_AFTER, now: datetime | None = None) -> float:
    """Retry-After as seconds from now: a number of seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return default
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return default
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - (now or timezone.now())).total_seconds()
    return min(max(seconds, 1.0), MAX_RETRY_AFTER)


class FeedConnector:
    network = "rss"

    def __init__(self, config) -> None:
        self.config = config
        self.url = str(config.settings["url"])
        self.timeout = float(config.settings.get("timeout") or DEFAULT_TIMEOUT)

    def run(self, session) -> None:
        cursor = dict(session.cursor or {})
        if cursor.get("url") != self.url:  # another feed: the validators and ids of the old one do not apply
            cursor = {"url": self.url}
        response, body = self._fetch(session, cursor)
        moment = timezone.now()
        if response.status_code == 304:
            etag = response.headers.get("ETag")  # a 304 may carry fresher validators (RFC 9110 15.4.5)
            if etag:
                cursor["etag"] = etag
            session.emit([], cursor, newest_at=moment)
            self._rate_limit(session, response)
            return
        parsed = feedparser.parse(io.BytesIO(body), response_headers={
            "content-type": response.headers.get("Content-Type", "application/xml"),
            "content-location": response.url or self.url,
        })
        if not parsed.get("version") and not parsed.entries:
            self._unreadable(session, cursor, body, parsed)
            return
        cursor["unreadable"] = 0
        if parsed.get("bozo"):
            # Not well-formed, but feedparser's loose parser recovered the entries: keep them, say so.
            warning = f"{type(parsed.get('bozo_exception')).__name__}: {parsed.get('bozo_exception')}"[:300]
            log.warning("feed is not well-formed; stored what parsed",
                        extra={"source_id": session.source_id, "url": self.url, "error": warning})
            cursor["warning"] = warning
        else:
            cursor.pop("warning", None)
        posts, ids = self._posts(session, parsed, cursor, moment)
        seen = list(dict.fromkeys(ids + list(cursor.get("seen") or [])))
        cursor["seen"] = seen[:max(SEEN_MAX, len(ids))]
        for name, header in (("etag", "ETag"), ("modified", "Last-Modified")):
            if response.headers.get(header):
                cursor[name] = response.headers[header]
            else:
                cursor.pop(name, None)
        # We have read all the feed holds: caught up as of now (a quiet blog is not a lagging reader).
        session.emit(posts, cursor, newest_at=moment)
        self._rate_limit(session, response)

    # --- HTTP ------------------------------------------------------------------------------------

    def _fetch(self, session, cursor: dict[str, Any]) -> tuple[requests.Response, bytes]:
        headers = {"User-Agent": USER_AGENT, "Accept": ACCEPT, "Accept-Encoding": "gzip, deflate"}
        if cursor.get("etag"):
            headers["If-None-Match"] = str(cursor["etag"])
        if cursor.get("modified"):
            headers["If-Modified-Since"] = str(cursor["modified"])
        if session.secrets.get("authorization"):
            headers["Authorization"] = str(session.secrets["authorization"])
        session.throttle()
        started = time.monotonic()
        try:
            with requests.Session() as http:
                http.max_redirects = 5
                response = http.get(self.url, headers=headers, timeout=self.timeout, stream=True)
                try:
                    self._check_status(response)
                    body = self._read(response, started)
                finally:
                    response.close()
        except requests.Timeout as exc:
            raise ConnectorError(f"The feed did not answer in {self.timeout:g} s: {exc}", code="timeout") from None
        except requests.TooManyRedirects:
            raise ConnectorError("The feed redirects in circles.", code="too_many_redirects", transient=False) from None
        except requests.RequestException as exc:
            raise ConnectorError(f"Could not fetch the feed: {exc}", code="connection_error") from None
        return response, body

    def _check_status(self, response: requests.Response) -> None:
        status = response.status_code
        if 200 <= status < 300 or status == 304:
            return
        where = f"{self.url} answered {status} {response.reason or ''}".strip()
        if status == 429 or (status == 503 and response.headers.get("Retry-After")):
            raise RateLimited(where, retry_after=retry_after_seconds(response.headers.get("Retry-After")))
        if status in (401, 403):
            raise AuthFailed(f"{where}: the feed is private (set the source's authorization secret) or refused it.")
        if status == 410:
            raise ConnectorError(f"{where}: the feed is gone for good; change the source's url.", code="feed_gone",
                                 transient=False)
        if status == 404:
            raise ConnectorError(f"{where}: no feed at this address.", code="feed_not_found")
        if status >= 500:
            raise ConnectorError(where, code=f"http_{status}")
        raise ConnectorError(where, code=f"http_{status}", transient=False)

    def _read(self, response: requests.Response, started: float) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > MAX_BYTES:
            raise ConnectorError(f"The feed is {declared} bytes, more than {MAX_BYTES}.", code="feed_too_large",
                                 transient=False)
        chunks, size = [], 0
        for chunk in response.iter_content(64 * 1024):  # decompressed: a gzip bomb counts at its real size
            size += len(chunk)
            if size > MAX_BYTES:
                raise ConnectorError(f"The feed is larger than {MAX_BYTES} bytes.", code="feed_too_large",
                                     transient=False)
            if time.monotonic() - started > 3 * self.timeout:  # a server dripping bytes to keep us forever
                raise ConnectorError("The feed took too long to arrive.", code="timeout")
            chunks.append(chunk)
        return b"".join(chunks)

    def _rate_limit(self, session, response: requests.Response) -> None:
        # Not standard for feeds, but some big hosts send these (Reddit, GitHub): a spent budget ends the session.
        remaining = response.headers.get("X-RateLimit-Remaining", "")
        if not remaining.strip().lstrip("-").isdigit():
            return
        reset = response.headers.get("X-RateLimit-Reset", "").strip()
        reset_at = None
        if reset.replace(".", "", 1).isdigit():
            value = float(reset)
            # An epoch (GitHub) or seconds from now (Reddit).
            reset_at = datetime.fromtimestamp(value, UTC) if value > 1e9 else timezone.now() + timedelta(seconds=value)
        session.rate_limit_seen(remaining=int(remaining), reset_at=reset_at)

    # --- what the feed says ---------------------------------------------------------------------

    def _unreadable(self, session, cursor: dict[str, Any], body: bytes, parsed) -> None:
        error = parsed.get("bozo_exception")
        reason = f"{type(error).__name__}: {error}" if error else "not an RSS or Atom document"
        session.malformed(body, error=f"{self.url}: {reason}"[:2000], code="unreadable_feed")
        # Validators are dropped so the next poll reads the body again instead of a 304 on garbage.
        cursor.pop("etag", None)
        cursor.pop("modified", None)
        cursor["unreadable"] = int(cursor.get("unreadable") or 0) + 1
        session.emit([], cursor)
        if cursor["unreadable"] >= UNREADABLE_LIMIT:
            raise ConnectorError(f"{self.url} was unreadable {cursor['unreadable']} times in a row: {reason}"[:2000],
                                 code="feed_unreadable")

    def _posts(self, session, parsed, cursor: dict[str, Any], moment: datetime) -> tuple[list[Post], list[str]]:
        seen = set(cursor.get("seen") or [])
        feed_language = str(parsed.feed.get("language") or "")
        posts: list[Post] = []
        ids: list[str] = []
        known: set[str] = set()
        for entry in parsed.entries:
            post = entry_post(entry, feed_url=self.url, feed_language=feed_language, now=moment)
            if post is None:
                session.malformed(orjson.dumps(dict(entry), default=str, option=orjson.OPT_NON_STR_KEYS),
                                  error="A feed entry with no id, link, title or text.", code="unexpected_shape")
                continue
            digest = _digest(post.external_id)
            if digest in known:
                continue
            known.add(digest)
            ids.append(digest)
            if digest not in seen:
                posts.append(post)
        return posts, ids


def entry_external_id(entry, *, feed_url: str) -> str:
    """The entry's id (Atom id, RSS guid) or link; ids that are not URIs are made unique with the feed's URL."""
    raw = str(entry.get("id") or entry.get("link") or "").strip()
    if not raw:
        basis = f"{entry.get('title') or ''}\n{entry.get('summary') or ''}".strip()
        if not basis:
            return ""
        return "sha256:" + hashlib.sha256(f"{feed_url}\n{basis}".encode()).hexdigest()
    if not _SCHEME.match(raw):
        raw = f"{feed_url}#{raw}"  # "42" from two forums are two posts
    if len(raw) > 400:
        return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()
    return raw


def _moment(entry, now: datetime) -> datetime:
    for name in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(name)
        if value:
            try:
                moment = datetime(*value[:6], tzinfo=UTC)  # feedparser gives UTC
            except (TypeError, ValueError):
                continue
            return min(moment, now)  # a date in the future is a publisher's mistake, not news from tomorrow
    return now


def _clean(value: object) -> str:
    # feedparser's loose parser passes NUL through (raw, or as &#0;), and PostgreSQL text cannot store it.
    return str(value or "").replace("\x00", "")


def entry_post(entry, *, feed_url: str, feed_language: str = "", now: datetime | None = None) -> Post | None:
    """One feedparser entry as a Post, or None when it has nothing to know it by."""
    moment = now or timezone.now()
    external_id = _clean(entry_external_id(entry, feed_url=feed_url))
    if not external_id:
        return None
    contents = entry.get("content") or []
    html = contents[0].get("value", "") if contents else ""
    html = html or entry.get("summary") or ""
    title = _clean(html_to_text(str(entry.get("title") or "")))[:300]
    text = _clean(html_to_text(str(html)))[:MAX_TEXT] or title
    link = _clean(entry.get("link"))
    author = entry.get("author_detail") or {}
    language = ""
    for detail in ([contents[0]] if contents else []) + [entry.get("summary_detail") or {}, entry.get("title_detail") or {}]:
        if detail.get("language"):
            language = str(detail["language"])
            break
    return Post(
        network="rss", external_id=external_id, text=text, posted_at=_moment(entry, moment), kind="post",
        url=link[:1000] if link.startswith(("http://", "https://")) else "", title=title,
        author_name=_clean(author.get("name") or entry.get("author"))[:200],
        author_id=_clean(author.get("href"))[:400],
        language=_clean(language or feed_language)[:16],
    )
