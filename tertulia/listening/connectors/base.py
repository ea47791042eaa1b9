"""The port every listening connector implements, what it hands over (Post), and the errors it may raise.

A connector is one file per network (connectors/<network>.py) with a `SPEC` (the settings and secrets a
source of that network takes) and a class with `run(session)`. The runner (listening.runner) claims a due
source, builds its connector and calls `run` once per session; the connector reads the platform from
`session.cursor`, hands what it heard to `session.emit(posts, cursor)` (stored with the new cursor in one
transaction, so a restart resumes with no gap and no duplicate), reports what it could not read with
`session.malformed(...)`, and returns. A polling connector returns after one poll and says when the next
is due (`session.next_run_in`); a streaming one reads until `session.should_stop()` and returns, and the
runner starts the next session at once. Vendor SDKs stay inside the connector file.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

# How long a source the platform pushes to (webhook, inbound mail) waits between its no-op sessions.
PUSHED_WAIT_SECONDS = 86400.0


@dataclass(slots=True)
class Post:
    """One thing a person wrote on a platform, as a connector heard it."""

    network: str  # listening.models.Network
    external_id: str  # unique on the network: status id, at:// URI, tweet id, feed entry id, Message-ID
    text: str  # plain text (HTML already turned into text)
    posted_at: datetime  # aware
    kind: str = "post"  # post (heard through tracked terms), mention (addressed to the store), direct (private)
    url: str = ""
    author_id: str = ""
    author_handle: str = ""  # as the network writes it: user@instance, alice.bsky.social, jack, an address
    author_name: str = ""
    author_followers: int | None = None
    title: str = ""
    language: str = ""  # what the platform says, if anything
    in_reply_to: str = ""  # external id of the post this answers
    thread_root: str = ""  # external id of the first post of its thread, when the platform says
    reply_ref: dict[str, Any] = field(default_factory=dict)  # what a reply to it needs besides external_id
    metrics: dict[str, int] = field(default_factory=dict)  # likes, reposts, replies...


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """What a source of one network takes: setting names with their JSON types, secrets, and limits."""

    settings: dict[str, type | tuple[type, ...]]
    required_settings: frozenset[str] = frozenset()
    secrets: frozenset[str] = frozenset()
    required_secrets: frozenset[str] = frozenset()
    # The platform's documented request budget: at most `rate_limit` requests per `rate_window` seconds.
    rate_limit: int = 0  # 0: no budget (inbound webhooks)
    rate_window: float = 300.0
    poll_seconds: float = 60.0  # default time between two polls (a setting `poll_seconds` overrides it)
    min_poll_seconds: float = 5.0
    streaming: bool = False  # runs until should_stop(), then the next session starts at once
    pushed: bool = False  # nothing to run: the platform posts to us (inbound webhook)


class ConnectorError(Exception):
    """A session that could not do its work. Transient errors are retried with backoff; others wait longer
    and raise the connector-down alert at once (bad credentials do not fix themselves)."""

    def __init__(self, message: str, *, code: str = "connector_error", transient: bool = True,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient
        self.retry_after = retry_after


class RateLimited(ConnectorError):
    """The platform said to slow down (a 429, or its remaining budget is spent): wait `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, code="rate_limited", transient=True, retry_after=retry_after)


class AuthFailed(ConnectorError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="auth_failed", transient=False)


class Session(Protocol):
    """What the runner gives a connector for one session (implemented by listening.runner.RunnerSession)."""

    source_id: int
    store_id: int
    network: str
    settings: dict[str, Any]
    secrets: dict[str, Any]
    cursor: dict[str, Any]  # a copy; the connector hands the new one to emit()

    def emit(self, posts: Sequence[Post], cursor: dict[str, Any] | None = None, *,
             newest_at: datetime | None = None) -> int:
        """Store `posts` (the ones that matter become mentions) and the new cursor, in one transaction;
        returns how many mentions were new. `newest_at` (the platform's time at the cursor) gives the lag."""
        ...

    def malformed(self, raw: bytes | str, *, error: str, code: str = "unexpected_shape") -> None:
        """Keep something unreadable as received, count it, carry on."""
        ...

    def throttle(self, requests: int = 1) -> None:
        """Call before each request: counts it against the platform's budget, and raises RateLimited when
        the budget of the current window is spent."""
        ...

    def rate_limit_seen(self, *, remaining: int | None, reset_at: datetime | None) -> None:
        """What the platform's rate-limit headers said; with nothing left, the session ends until reset_at."""
        ...

    def should_stop(self) -> bool:
        """True when the worker is stopping or the session's time is up."""
        ...

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if the session should stop."""
        ...

    def next_run_in(self, seconds: float) -> None:
        """When the next session is due (polling connectors); the runner's default is the poll interval."""
        ...

    def heartbeat(self) -> None:
        """Keep the source's lease while waiting on a quiet stream."""
        ...


class Connector(Protocol):
    network: str

    def run(self, session: Session) -> None: ...


def html_to_text(html: str) -> str:
    """Mastodon's and feeds' HTML as plain text: paragraphs and line breaks kept, tags dropped, entities decoded."""
    import html as html_lib
    import re

    if not html:
        return ""
    text = re.sub(r"(?i)<br\s*/?>", "\n", html)
    text = re.sub(r"(?i)</p\s*>\s*<p[^>]*>", "\n\n", text)
    text = re.sub(r"<[^>]+>", "", text)
    return html_lib.unescape(text).strip()
