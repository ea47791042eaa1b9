"""The inbound webhook connector: any source that can POST JSON (a forum, Zapier, a store's own scraper).

POST /webhooks/listening/<store>/<source key> with the source's token (listening.pushed). The body is one
post, a list of posts, or {"posts": [...]}, at most MAX_POSTS; a post is

    {"id": "abc-1", "text": "...", "created_at": "2026-12-01T10:00:00Z", "url": "https://...",
     "kind": "post" | "mention" | "direct", "title": "...", "language": "es",
     "author": {"id": "...", "handle": "...", "name": "...", "followers": 120},
     "in_reply_to": "...", "thread_root": "..."}

where only id and text are required (created_at defaults to the moment it arrives). All or nothing: one
invalid post refuses the whole delivery with every problem listed (index and field), and the body is kept
for inspection. Ids are the sender's own; they are stored as "<source key>:<id>", so a replayed delivery
(or one post sent twice) is stored once and two webhook sources never collide.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.utils import timezone

from tertulia.core.errors import ErrorDetail
from tertulia.listening.connectors.base import PUSHED_WAIT_SECONDS, Post, SourceSpec

SPEC = SourceSpec(settings={}, secrets=frozenset({"token"}), pushed=True)
MAX_POSTS = 1000
MAX_TEXT = 20_000
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
KINDS = ("post", "mention", "direct")


class PayloadError(Exception):
    def __init__(self, code: str, message: str, details: list[ErrorDetail] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or []


class Pushed:
    network = "webhook"

    def run(self, session) -> None:  # never claimed: the runner sees SPEC.pushed
        session.next_run_in(PUSHED_WAIT_SECONDS)


def build(config) -> Pushed:
    return Pushed()


def _text(value: Any, field: str, problems: list[ErrorDetail], index: int, *, limit: int, required: bool = False) -> str:
    if value is None or value == "":
        if required:
            problems.append(ErrorDetail(field=field, code="required", message="Required.", index=index))
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool) and field in ("id", "author.id"):
        value = str(value)
    if not isinstance(value, str):
        problems.append(ErrorDetail(field=field, code="invalid_type", message="Must be a string.", index=index))
        return ""
    if len(value) > limit:
        problems.append(ErrorDetail(field=field, code="too_long", message=f"At most {limit} characters.", index=index))
        return ""
    return value


def _moment(value: Any, field: str, problems: list[ErrorDetail], index: int, now: datetime) -> datetime:
    if value in (None, ""):
        return now
    if not isinstance(value, str):
        problems.append(ErrorDetail(field=field, code="invalid_type", message="An ISO 8601 date and time.", index=index))
        return now
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        problems.append(ErrorDetail(field=field, code="invalid_datetime", message="An ISO 8601 date and time.",
                                    index=index))
        return now
    if timezone.is_naive(moment):
        problems.append(ErrorDetail(field=field, code="naive_datetime", message="Give the time zone (Z or +01:00).",
                                    index=index))
        return now
    if not EARLIEST <= moment <= now + timedelta(days=1):
        problems.append(ErrorDetail(field=field, code="out_of_range", message="Not a plausible moment.", index=index))
        return now
    return moment


def parse(body: bytes, *, source_key: str, now: datetime | None = None) -> list[Post]:
    """The posts of one delivery, or PayloadError with every problem found."""
    moment = now or timezone.now()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError("invalid_json", f"The body is not JSON: {exc}") from None
    items = data.get("posts") if isinstance(data, dict) and "posts" in data else data
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        raise PayloadError("unexpected_shape", "Send a post object, a list of posts or {\"posts\": [...]}.")
    if not items:
        raise PayloadError("empty", "The delivery has no posts.")
    if len(items) > MAX_POSTS:
        raise PayloadError("too_many", f"At most {MAX_POSTS} posts per delivery.")
    problems: list[ErrorDetail] = []
    posts = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(ErrorDetail(field="", code="invalid_type", message="A post is an object.", index=index))
            continue
        post_id = _text(item.get("id"), "id", problems, index, limit=300, required=True)
        text = _text(item.get("text"), "text", problems, index, limit=MAX_TEXT, required=True)
        author = item.get("author") or {}
        if not isinstance(author, dict):
            problems.append(ErrorDetail(field="author", code="invalid_type", message="An object.", index=index))
            author = {}
        followers = author.get("followers")
        if followers is not None and (not isinstance(followers, int) or isinstance(followers, bool) or followers < 0):
            problems.append(ErrorDetail(field="author.followers", code="invalid", message="A whole number >= 0.",
                                        index=index))
            followers = None
        kind = item.get("kind") or "post"
        if kind not in KINDS:
            problems.append(ErrorDetail(field="kind", code="invalid", message=f"One of: {', '.join(KINDS)}.", index=index))
            kind = "post"
        posted_at = _moment(item.get("created_at"), "created_at", problems, index, moment)
        post = Post(
            network="webhook", external_id=f"{source_key}:{post_id}", text=text, posted_at=posted_at, kind=kind,
            url=_text(item.get("url"), "url", problems, index, limit=1000),
            title=_text(item.get("title"), "title", problems, index, limit=300),
            language=_text(item.get("language"), "language", problems, index, limit=16),
            author_id=_text(author.get("id"), "author.id", problems, index, limit=300),
            author_handle=_text(author.get("handle"), "author.handle", problems, index, limit=320),
            author_name=_text(author.get("name"), "author.name", problems, index, limit=200),
            author_followers=followers,
        )
        for name in ("in_reply_to", "thread_root"):
            value = _text(item.get(name), name, problems, index, limit=300)
            setattr(post, name, f"{source_key}:{value}" if value else "")
        posts.append(post)
    if problems:
        raise PayloadError("invalid_posts", "Some posts are not valid; nothing was stored.", problems)
    return posts
