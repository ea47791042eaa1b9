"""A local feed host: RSS 2.0 and Atom 1.0 feeds over real HTTP, with ETag/Last-Modified, 304s and failures on demand.

Feeds are built from the entries they are given (`add_feed`, `add_entry`) in the formats' own shapes (RSS
2.0 as the RSS Advisory Board's specification writes it, Atom as RFC 4287), or are any bytes you hand over
(`serve`: a captured real feed, an HTML page, garbage). Every response carries a strong ETag (a digest of
the body) and Last-Modified (when the feed last changed), unless the feed is made without validators, and a
conditional request that matches gets 304 Not Modified, as RFC 9110 says: If-None-Match wins over
If-Modified-Since. `fail(path, status, ...)` queues error answers (a 429 with Retry-After, a 410...).
Every request is kept in `requests` (path, headers, status) so a test or a curious newcomer can see what
the reader sent.

    with FeedSandbox() as feeds:
        url = feeds.add_feed("/blog.xml", kind="atom", title="Blog de cocina")
        feeds.add_entry("/blog.xml", entry_id="tag:blog.example,2026:1", title="Hola", html="<p>Hola</p>")
"""

import gzip
import hashlib
import xml.etree.ElementTree as ET  # noqa: S405 - we only write XML here, never parse it
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler

from tertulia.listening.sandbox import SandboxHTTPServer

ATOM = "http://www.w3.org/2005/Atom"
DC = "http://purl.org/dc/elements/1.1/"
ET.register_namespace("dc", DC)


@dataclass
class Entry:
    entry_id: str
    title: str
    html: str
    link: str = ""
    author: str = ""
    published: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated: datetime | None = None


@dataclass
class Feed:
    kind: str  # rss, atom or raw
    title: str = ""
    link: str = ""
    language: str = ""
    entries: list[Entry] = field(default_factory=list)
    raw: bytes = b""
    content_type: str = ""
    validators: bool = True
    headers: dict[str, str] = field(default_factory=dict)  # sent with every answer (a host's rate-limit headers)
    modified: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))


@dataclass
class Failure:
    status: int
    headers: dict[str, str]
    body: bytes


def rss_document(feed: Feed) -> bytes:
    rss = ET.Element("rss", {"version": "2.0"})
    channel = ET.SubElement(rss, "channel")
    for name, value in (("title", feed.title), ("link", feed.link), ("description", feed.title),
                        ("language", feed.language), ("lastBuildDate", format_datetime(feed.modified, usegmt=True)),
                        ("generator", "Tertulia feed sandbox")):
        if value:
            ET.SubElement(channel, name).text = value
    for entry in feed.entries:
        item = ET.SubElement(channel, "item")
        if entry.title:
            ET.SubElement(item, "title").text = entry.title
        if entry.link:
            ET.SubElement(item, "link").text = entry.link
        ET.SubElement(item, "description").text = entry.html  # HTML, escaped once, as RSS carries it
        ET.SubElement(item, "pubDate").text = format_datetime(entry.published.astimezone(UTC), usegmt=True)
        permalink = "true" if entry.entry_id == entry.link else "false"
        ET.SubElement(item, "guid", {"isPermaLink": permalink}).text = entry.entry_id
        if entry.author:
            ET.SubElement(item, f"{{{DC}}}creator").text = entry.author
    return ET.tostring(rss, encoding="utf-8", xml_declaration=True)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def atom_document(feed: Feed) -> bytes:
    # Plain tag names under a literal xmlns: ElementTree cannot write a default namespace with bare attributes.
    attributes = {"xmlns": ATOM, "xml:lang": feed.language} if feed.language else {"xmlns": ATOM}
    root = ET.Element("feed", attributes)
    ET.SubElement(root, "title").text = feed.title
    ET.SubElement(root, "id").text = feed.link or "urn:tertulia:sandbox-feed"
    ET.SubElement(root, "updated").text = _rfc3339(feed.modified)
    if feed.link:
        ET.SubElement(root, "link", {"rel": "alternate", "type": "text/html", "href": feed.link})
    for item in feed.entries:
        entry = ET.SubElement(root, "entry")
        ET.SubElement(entry, "id").text = item.entry_id
        ET.SubElement(entry, "title").text = item.title
        if item.link:
            ET.SubElement(entry, "link", {"rel": "alternate", "type": "text/html", "href": item.link})
        ET.SubElement(entry, "published").text = _rfc3339(item.published)
        ET.SubElement(entry, "updated").text = _rfc3339(item.updated or item.published)
        author = ET.SubElement(entry, "author")
        ET.SubElement(author, "name").text = item.author or feed.title
        ET.SubElement(entry, "content", {"type": "html"}).text = item.html
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


class FeedHandler(BaseHTTPRequestHandler):
    sandbox: "FeedSandbox"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # noqa: A002 - http.server's signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        status, headers, body = self.sandbox.answer(self.path.split("?", 1)[0], dict(self.headers.items()))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 304:
            self.wfile.write(body)


class FeedSandbox(SandboxHTTPServer):
    handler_class = FeedHandler

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, gzip_bodies: bool = True) -> None:
        super().__init__(host=host, port=port)
        self.feeds: dict[str, Feed] = {}
        self.failures: dict[str, deque[Failure]] = {}
        self.requests: list[dict] = []
        self.gzip_bodies = gzip_bodies

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def add_feed(self, path: str = "/feed.xml", *, kind: str = "rss", title: str = "Sandbox feed", link: str = "",
                 language: str = "es", validators: bool = True) -> str:
        if kind not in ("rss", "atom"):
            raise ValueError("kind is rss or atom")
        with self.lock:
            self.feeds[path] = Feed(kind=kind, title=title, link=link or self.url("/"), language=language,
                                    validators=validators)
        return self.url(path)

    def add_entry(self, path: str, *, entry_id: str, title: str = "", html: str = "", link: str = "", author: str = "",
                  published: datetime | None = None, updated: datetime | None = None) -> None:
        """Put an entry at the top of the feed (feeds list the newest first); the feed changes."""
        with self.lock:
            feed = self.feeds[path]
            feed.entries.insert(0, Entry(entry_id=entry_id, title=title, html=html, link=link, author=author,
                                         published=published or datetime.now(UTC), updated=updated))
            self._changed(feed)

    def serve(self, path: str, body: bytes, *, content_type: str = "application/rss+xml; charset=utf-8",
              validators: bool = True, headers: dict[str, str] | None = None) -> str:
        """Serve these exact bytes at `path` (a captured feed, an HTML page, garbage); the feed changes."""
        with self.lock:
            feed = self.feeds.get(path)
            if feed is None:
                feed = self.feeds[path] = Feed(kind="raw")
            feed.kind, feed.raw, feed.content_type, feed.validators = "raw", body, content_type, validators
            feed.headers = dict(headers or {})
            self._changed(feed)
        return self.url(path)

    def fail(self, path: str, status: int, *, headers: dict[str, str] | None = None, body: bytes = b"",
             times: int = 1) -> None:
        """The next `times` requests for `path` get this status instead of the feed."""
        with self.lock:
            queue = self.failures.setdefault(path, deque())
            queue.extend(Failure(status=status, headers=dict(headers or {}), body=body) for _ in range(times))

    def hits(self, path: str) -> int:
        with self.lock:
            return sum(1 for request in self.requests if request["path"] == path)

    @staticmethod
    def _changed(feed: Feed) -> None:
        # Last-Modified has one-second precision: every change moves it on, so If-Modified-Since sees it.
        feed.modified = max(datetime.now(UTC).replace(microsecond=0), feed.modified + timedelta(seconds=1))

    def render(self, feed: Feed) -> tuple[bytes, str]:
        if feed.kind == "rss":
            return rss_document(feed), "application/rss+xml; charset=utf-8"
        if feed.kind == "atom":
            return atom_document(feed), "application/atom+xml; charset=utf-8"
        return feed.raw, feed.content_type

    def answer(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        lower = {name.lower(): value for name, value in headers.items()}
        with self.lock:
            record = {"path": path, "headers": headers}
            self.requests.append(record)
            queue = self.failures.get(path)
            if queue:
                failure = queue.popleft()
                record["status"] = failure.status
                return failure.status, {"Content-Type": "text/plain; charset=utf-8", **failure.headers}, failure.body
            feed = self.feeds.get(path)
            if feed is None:
                record["status"] = 404
                return 404, {"Content-Type": "text/plain; charset=utf-8"}, b"Not found"
            body, content_type = self.render(feed)
            modified = feed.modified
            validators = feed.validators
            extra = dict(feed.headers)
        out = {"Content-Type": content_type, "Cache-Control": "max-age=60", **extra}
        if validators:
            etag = '"' + hashlib.sha256(body).hexdigest()[:24] + '"'
            out |= {"ETag": etag, "Last-Modified": format_datetime(modified, usegmt=True)}
            if _not_modified(lower, etag=etag, modified=modified):
                record["status"] = 304
                return 304, {name: value for name, value in out.items() if name != "Content-Type"}, b""
        if self.gzip_bodies and "gzip" in lower.get("accept-encoding", ""):
            body = gzip.compress(body)
            out["Content-Encoding"] = "gzip"
        out["Vary"] = "Accept-Encoding"
        record["status"] = 200
        return 200, out, body


def _not_modified(headers: dict[str, str], *, etag: str, modified: datetime) -> bool:
    if "if-none-match" in headers:  # RFC 9110 13.2.2: If-Modified-Since is ignored when If-None-Match is sent
        given = [tag.strip().removeprefix("W/") for tag in headers["if-none-match"].split(",")]
        return "*" in given or etag in given
    since = headers.get("if-modified-since")
    if since:
        try:
            moment = parsedate_to_datetime(since)
        except (TypeError, ValueError, IndexError):
            return False
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return modified <= moment
    return False
