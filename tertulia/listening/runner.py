"""The listening runner: claims due sources under a lease and runs their connectors, one session at a time.

A Source is the durable row that waits (`next_run_at`). The worker runs `run_listeners` in a thread: it
claims due sources (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so several workers never take the same one;
an IMMEDIATE transaction on SQLite) and runs each one's session in a pool of threads. A session ends
when a poll is done, or when a stream's time is up (TERTULIA_LISTENING_STREAM_SECONDS), and is recorded:

- success: health reset, next run after the poll interval (at once for a stream), an open
  connector-down alert closed;
- a transient error: retried with exponential backoff and jitter (or when the platform said);
- rate limited: not a failure; the next run waits until the platform's window resets;
- after TERTULIA_LISTENING_ALERT_AFTER failures in a row, or at once for bad credentials: the
  connector-down alert opens (dashboard, /metrics, an error log line and an e-mail to the team).

A worker killed mid-session leaves its claim behind; when the lease expires another worker claims the
source and resumes from the last cursor `emit` wrote (posts and cursor are written in one transaction,
and a mention is stored once whatever is heard twice). Between sessions the runner also sweeps the
inbox (snoozed conversations waking, questions and reviews becoming conversations, SLA breaches).
"""

import logging
import os
import random
import socket
import threading
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from tertulia.channels.credentials import CredentialsError
from tertulia.core.db import db_datetime, is_postgres
from tertulia.listening.connectors import (
    ConnectorError,
    Post,
    RateLimited,
    SourceSpec,
    connector_build,
    spec_for,
)
from tertulia.listening.connectors.base import PUSHED_WAIT_SECONDS
from tertulia.listening.models import AlertKind, MalformedPayload, Source
from tertulia.listening.services import (
    alert_close,
    alert_open,
    catalogue_terms_sweep,
    mentions_ingest,
    post_problems,
)
from tertulia.listening.sources import source_config

log = logging.getLogger("tertulia.listening")

DEFAULT_THREADS = 4
DEFAULT_LEASE_SECONDS = 60.0
DEFAULT_STREAM_SECONDS = 300.0
DEFAULT_POLL_SESSION_SECONDS = 120.0
DEFAULT_ALERT_AFTER = 3
BACKOFF_BASE_SECONDS = 15.0
BACKOFF_MAX_SECONDS = 1800.0
PERMANENT_WAIT_SECONDS = 1800.0  # bad credentials: look again in half an hour (or when the source is changed)
INBOX_SWEEP_SECONDS = 5.0
CATALOGUE_SWEEP_SECONDS = 60.0  # product titles and SKUs become tracked terms within a minute
MAX_RAW = 1_000_000
TABLE = Source._meta.db_table


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def alert_after_failures() -> int:
    return int(_setting("TERTULIA_LISTENING_ALERT_AFTER", DEFAULT_ALERT_AFTER))


def source_is_down(source: Source) -> bool:
    """Broken for long enough to alert: failures in a row, or an error that will not fix itself."""
    return bool(source.consecutive_failures) and (
        source.consecutive_failures >= alert_after_failures() or source.last_error_code in PERMANENT_CODES)


# Errors that do not fix themselves: the team is told at the first one, not after several.
PERMANENT_CODES = frozenset({"auth_failed", "credentials_unreadable", "misconfigured", "feed_gone",
                             "mailbox_not_found"})


def backoff_delay(failures: int) -> float:
    """Exponential backoff with jitter (0.5-1.0 of base * 2**(n-1)), capped."""
    base = _setting("TERTULIA_LISTENING_BACKOFF_BASE_SECONDS", BACKOFF_BASE_SECONDS)
    cap = _setting("TERTULIA_LISTENING_BACKOFF_MAX_SECONDS", BACKOFF_MAX_SECONDS)
    return min(cap, base * 2 ** max(failures - 1, 0)) * (0.5 + random.random() / 2)  # noqa: S311


class LeaseLost(Exception):  # noqa: N818 - named for what happened
    """Another runner took the source over (our lease expired): stop without writing anything more."""


# --- claiming --------------------------------------------------------------------------------


def source_claim(*, worker: str, lease: float, now: datetime | None = None, source_id: int | None = None,
                 due: bool = True) -> Source | None:
    """Claim the most overdue enabled source that nobody holds (or whose holder's lease expired).

    With `source_id`, that source only; `due=False` claims it even before its next run (`tertulia
    listening source run`)."""
    moment = now or timezone.now()
    rows = Source.objects.filter(enabled=True)
    if due:
        rows = rows.filter(next_run_at__lte=moment)
    if source_id is not None:
        rows = rows.filter(pk=source_id)
    free = rows.filter(claimed_by="") | rows.filter(lease_expires_at__lt=moment)
    if not is_postgres() and not free.exists():
        return None  # idle polls stay read-only: no SQLite write lock
    lock_sql = " FOR UPDATE SKIP LOCKED" if is_postgres() else ""
    sqlite = not is_postgres()
    stamp = db_datetime(moment, sqlite=sqlite)
    conditions, extra = "", []
    if due:
        conditions += " AND next_run_at <= %s"
        extra.append(stamp)
    if source_id is not None:
        conditions += " AND id = %s"
        extra.append(source_id)
    sql = (
        f"UPDATE {TABLE} SET claimed_by = %s, lease_expires_at = %s, last_run_at = %s "  # noqa: S608 - fixed identifiers
        f"WHERE id = (SELECT id FROM {TABLE} WHERE enabled = %s{conditions} "
        f"AND (claimed_by = '' OR lease_expires_at < %s) ORDER BY next_run_at, id LIMIT 1{lock_sql}) RETURNING id"
    )
    params = [worker, db_datetime(moment + timedelta(seconds=lease), sqlite=sqlite), stamp, True, *extra, stamp]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return Source.objects.get(pk=row[0]) if row else None


def _mine(source_id: int, worker: str):
    return Source.objects.filter(pk=source_id, claimed_by=worker)


# --- one session -----------------------------------------------------------------------------


class RunnerSession:
    """The connector's side of one session (listening.connectors.base.Session)."""

    def __init__(self, *, source: Source, settings_: dict[str, Any], secrets: dict[str, Any], spec: SourceSpec,
                 worker: str, lease: float, stop: threading.Event, seconds: float) -> None:
        self.source_id = source.pk
        self.store_id = source.store_id
        self.network = source.network
        self.settings = settings_
        self.secrets = secrets
        self.cursor = dict(source.cursor or {})
        self.spec = spec
        self.worker = worker
        self.lease = lease
        self._stop = stop
        self._deadline = time.monotonic() + seconds
        self._renewed = time.monotonic()
        self._next_run_in: float | None = None
        limit = int(settings_.get("rate_limit") or spec.rate_limit or 0)
        self.rate_limit = min(limit, spec.rate_limit) if spec.rate_limit and limit else limit
        self.rate_window = float(spec.rate_window)
        self.window_started = source.rate_window_started_at
        self.window_requests = source.rate_window_requests
        self.lost = False
        self.counts = {"posts": 0, "stored": 0, "duplicates": 0, "malformed": 0}

    # What connectors call.

    def emit(self, posts: Sequence[Post], cursor: dict[str, Any] | None = None, *,
             newest_at: datetime | None = None) -> int:
        good = []
        for post in posts:
            problems = post_problems(post) if isinstance(post, Post) else ["not a Post"]
            if problems:
                self.malformed(repr(post), error="; ".join(problems), code="invalid_post")
            else:
                good.append(post)
        moment = timezone.now()
        new_cursor = dict(cursor) if cursor is not None else self.cursor
        changes: dict[str, Any] = {
            # A stream's session lasts minutes: every emit is a sign of life the dashboard should see.
            "cursor": new_cursor, "lease_expires_at": moment + timedelta(seconds=self.lease),
            "rate_window_started_at": self.window_started, "rate_window_requests": self.window_requests,
        }
        if newest_at is not None:
            changes["lag_seconds"] = max((moment - newest_at).total_seconds(), 0.0)
        with transaction.atomic():
            result = mentions_ingest(store_id=self.store_id, posts=good, source_id=self.source_id, now=moment)
            changes |= heard_changes(posts=posts, newest_of=good, result=result, moment=moment)
            if not _mine(self.source_id, self.worker).update(**changes):
                self.lost = True
                raise LeaseLost(f"source {self.source_id} is no longer claimed by {self.worker}")
        self.cursor = new_cursor
        self._renewed = time.monotonic()
        self.counts["posts"] += len(posts)
        self.counts["stored"] += result.stored
        self.counts["duplicates"] += result.duplicates
        return result.stored

    def malformed(self, raw: bytes | str, *, error: str, code: str = "unexpected_shape") -> None:
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
        log.warning("malformed payload skipped", extra={"source_id": self.source_id, "network": self.network,
                                                        "code": code, "error": error[:500]})
        malformed_record(source_id=self.source_id, store_id=self.store_id, raw=text, error=error, code=code)
        self.counts["malformed"] += 1

    def throttle(self, requests: int = 1) -> None:
        if not self.rate_limit:
            return
        moment = timezone.now()
        if self.window_started is None or (moment - self.window_started).total_seconds() >= self.rate_window:
            self.window_started, self.window_requests = moment, 0
        if self.window_requests + requests > self.rate_limit:
            wait = self.rate_window - (moment - self.window_started).total_seconds()
            raise RateLimited(f"{self.rate_limit} requests per {self.rate_window:g} s used", retry_after=max(wait, 1.0))
        self.window_requests += requests

    def rate_limit_seen(self, *, remaining: int | None, reset_at: datetime | None) -> None:
        if remaining is not None and remaining <= 0:
            wait = (reset_at - timezone.now()).total_seconds() if reset_at else self.rate_window
            raise RateLimited("the platform's rate limit is spent", retry_after=max(wait, 1.0))

    def should_stop(self) -> bool:
        return self.lost or self._stop.is_set() or time.monotonic() >= self._deadline

    def wait(self, seconds: float) -> bool:
        end = time.monotonic() + max(seconds, 0.0)
        while not self.should_stop():
            left = min(end, self._deadline) - time.monotonic()
            if left <= 0:
                break
            self.heartbeat()
            self._stop.wait(min(left, max(self.lease / 3, 0.05)))
        return self.should_stop()

    def next_run_in(self, seconds: float) -> None:
        self._next_run_in = max(float(seconds), 0.0)

    def heartbeat(self) -> None:
        if time.monotonic() - self._renewed < self.lease / 3:
            return
        moment = timezone.now()
        if not _mine(self.source_id, self.worker).update(lease_expires_at=moment + timedelta(seconds=self.lease)):
            self.lost = True
        self._renewed = time.monotonic()

    # What the runner reads afterwards.

    @property
    def next_run_after(self) -> float:
        if self._next_run_in is not None:
            return self._next_run_in
        if self.spec.streaming:
            return 0.0
        return float(self.settings.get("poll_seconds") or self.spec.poll_seconds)


def heard_changes(*, posts: Sequence[Post], newest_of: Sequence[Post], result, moment: datetime) -> dict[str, Any]:
    """The source's counters and health after it handed over `posts` (pulled by a session or pushed to us),
    as one UPDATE's values: what was heard, stored and heard again, and the newest post so far."""
    changes: dict[str, Any] = {
        "posts_seen": F("posts_seen") + len(posts), "mentions_stored": F("mentions_stored") + result.stored,
        "duplicates_seen": F("duplicates_seen") + result.duplicates, "last_success_at": moment, "updated_at": moment,
    }
    newest = max((post.posted_at for post in newest_of), default=None)
    if newest is not None:
        changes["newest_post_at"] = Greatest(Coalesce(F("newest_post_at"), Value(newest)), Value(newest))
    return changes


def malformed_record(*, source_id: int, store_id: int, raw: str, error: str, code: str) -> None:
    # PostgreSQL text cannot hold NUL, and garbage often does: kept visibly escaped instead of failing the insert.
    raw, error = raw.replace("\x00", "\\x00"), error.replace("\x00", "\\x00")
    with transaction.atomic():
        MalformedPayload.objects.create(store_id=store_id, source_id=source_id, code=code[:32], error=error[:5000],
                                        raw=raw[:MAX_RAW])
        Source.objects.filter(pk=source_id).update(malformed_count=F("malformed_count") + 1)


def source_session_run(*, source: Source, worker: str, lease: float | None = None,
                       stop: threading.Event | None = None, seconds: float | None = None) -> str:
    """Run one session of a claimed source and record how it went: ok, rate_limited, failed, lost or pushed."""
    lease = float(lease or _setting("TERTULIA_LISTENING_LEASE_SECONDS", DEFAULT_LEASE_SECONDS))
    stop = stop or threading.Event()
    started = time.monotonic()
    try:
        spec = spec_for(source.network)
    except (LookupError, ImportError) as exc:
        return _record_failure(source, worker, ConnectorError(str(exc), code="misconfigured", transient=False))
    if spec.pushed:
        _mine(source.pk, worker).update(claimed_by="", lease_expires_at=None, last_success_at=timezone.now(),
                                        next_run_at=timezone.now() + timedelta(seconds=PUSHED_WAIT_SECONDS))
        return "pushed"
    if seconds is None:
        seconds = _setting("TERTULIA_LISTENING_STREAM_SECONDS", DEFAULT_STREAM_SECONDS) if spec.streaming \
            else _setting("TERTULIA_LISTENING_POLL_SESSION_SECONDS", DEFAULT_POLL_SESSION_SECONDS)
    try:
        config = source_config(source)
    except CredentialsError as exc:
        return _record_failure(source, worker, ConnectorError(str(exc), code="credentials_unreadable", transient=False))
    session = RunnerSession(source=source, settings_=config.settings, secrets=config.secrets, spec=spec,
                            worker=worker, lease=lease, stop=stop, seconds=seconds)
    try:
        connector = connector_build(config)
        connector.run(session)
    except LeaseLost:
        log.warning("listening session lost its lease", extra={"source_id": source.pk, "worker": worker})
        return "lost"
    except RateLimited as exc:
        return _record_rate_limited(source, worker, session, exc)
    except ConnectorError as exc:
        return _record_failure(source, worker, exc, session)
    except DatabaseError:
        raise  # the runner loop waits the outage out; the lease brings the source back
    except Exception as exc:  # noqa: BLE001 - a connector's bug is a failed session, never a dead runner
        log.exception("listening connector crashed", extra={"source_id": source.pk, "network": source.network})
        error = ConnectorError("".join(traceback.format_exception_only(exc)).strip(), code="connector_crashed")
        return _record_failure(source, worker, error, session)
    if session.lost:
        return "lost"
    moment = timezone.now()
    updated = _mine(source.pk, worker).update(
        claimed_by="", lease_expires_at=None, last_success_at=moment, consecutive_failures=0, failing_since=None,
        next_run_at=moment + timedelta(seconds=session.next_run_after), updated_at=moment,
        rate_window_started_at=session.window_started, rate_window_requests=session.window_requests)
    if updated:
        alert_close(store_id=source.store_id, kind=AlertKind.CONNECTOR_DOWN, source_id=source.pk, now=moment)
    log.info("listening session", extra={"source_id": source.pk, "network": source.network, "worker": worker,
                                         "seconds": round(time.monotonic() - started, 3), **session.counts})
    return "ok"


def _record_rate_limited(source: Source, worker: str, session: RunnerSession, exc: RateLimited) -> str:
    moment = timezone.now()
    wait = max(float(exc.retry_after or session.rate_window), 1.0)
    _mine(source.pk, worker).update(
        claimed_by="", lease_expires_at=None, next_run_at=moment + timedelta(seconds=wait), updated_at=moment,
        last_error_code="rate_limited", last_error=str(exc)[:2000], last_error_at=moment,
        rate_window_started_at=session.window_started, rate_window_requests=session.window_requests)
    log.info("listening source rate limited", extra={"source_id": source.pk, "network": source.network,
                                                     "retry_after": round(wait, 1)})
    return "rate_limited"


def _record_failure(source: Source, worker: str, exc: ConnectorError, session: RunnerSession | None = None) -> str:
    moment = timezone.now()
    failures = source.consecutive_failures + 1
    if exc.transient:
        wait = max(float(exc.retry_after or 0.0), backoff_delay(failures))
    else:
        wait = PERMANENT_WAIT_SECONDS
    since = source.failing_since or moment
    changes: dict[str, Any] = {
        "claimed_by": "", "lease_expires_at": None, "next_run_at": moment + timedelta(seconds=wait),
        "last_error_at": moment, "last_error_code": exc.code[:32], "last_error": str(exc)[:5000],
        "consecutive_failures": failures, "failing_since": since, "updated_at": moment,
    }
    if session is not None:
        changes |= {"rate_window_started_at": session.window_started, "rate_window_requests": session.window_requests}
    if not _mine(source.pk, worker).update(**changes):
        return "lost"
    source.consecutive_failures, source.last_error_code, source.failing_since = failures, exc.code, since
    down = source_is_down(source)
    log.log(logging.ERROR if down else logging.WARNING, "listening connector failed",
            extra={"source_id": source.pk, "network": source.network, "code": exc.code, "failures": failures,
                   "error": str(exc)[:500], "retry_in": round(wait, 1)})
    if down:
        alert_open(store_id=source.store_id, kind=AlertKind.CONNECTOR_DOWN, key=f"source:{source.pk}:{since.isoformat()}",
                   source_id=source.pk, now=moment,
                   details={"source": source.key, "network": source.network, "failures": failures,
                            "since": since.isoformat(), "code": exc.code, "error": str(exc)[:500]})
    return "failed"


# --- the loop --------------------------------------------------------------------------------


def listen_once(*, worker: str | None = None, now: datetime | None = None, sweep: bool = True) -> int:
    """Run every due source's session once, one after another, then sweep the inbox; returns sessions run.

    For tests and `tertulia worker --once`; the worker runs `run_listeners` instead.
    """
    worker = worker or f"{socket.gethostname()}:{os.getpid()}:once"
    ran = 0
    claimed: set[int] = set()
    while True:
        source = source_claim(worker=worker, lease=_setting("TERTULIA_LISTENING_LEASE_SECONDS", DEFAULT_LEASE_SECONDS),
                              now=now)
        if source is None or source.pk in claimed:
            if source is not None:
                _mine(source.pk, worker).update(claimed_by="", lease_expires_at=None)
            break
        claimed.add(source.pk)
        source_session_run(source=source, worker=worker)
        ran += 1
    if sweep:
        _inbox_sweep(now=now)
        catalogue_terms_sweep()
    return ran


def _inbox_sweep(*, now: datetime | None = None) -> None:
    # Imported here: inbox sits above listening.
    from tertulia.inbox.sweep import inbox_sweep

    inbox_sweep(now=now or timezone.now())


def run_listeners(*, stop: threading.Event, name: str, threads: int | None = None, poll_interval: float = 1.0) -> None:
    """Claim and run due sources in a pool of threads until `stop` is set; started by the worker.

    Nothing raised in here stops the loop: a database outage is waited out, anything else is logged.
    """
    size = int(threads or _setting("TERTULIA_LISTENING_THREADS", DEFAULT_THREADS))
    lease = _setting("TERTULIA_LISTENING_LEASE_SECONDS", DEFAULT_LEASE_SECONDS)
    running: dict[int, Future] = {}
    next_sweep = next_catalogue = 0.0
    log.info("listening runner started", extra={"worker": name, "threads": size})

    def session(source: Source) -> None:
        try:
            source_session_run(source=source, worker=name, lease=lease, stop=stop)
        except Exception:  # noqa: BLE001 - logged; the lease brings the source back
            log.exception("listening session failed", extra={"source_id": source.pk, "worker": name})
        finally:
            if not connection.in_atomic_block:
                connection.close()

    with ThreadPoolExecutor(max_workers=size, thread_name_prefix="tertulia-listen") as pool:
        try:
            while not stop.is_set():
                try:
                    close_old_connections()
                    for source_id in [key for key, future in running.items() if future.done()]:
                        del running[source_id]
                    while len(running) < size and not stop.is_set():
                        source = source_claim(worker=name, lease=lease)
                        if source is None:
                            break
                        if source.pk in running:  # our own session of it is still ending
                            _mine(source.pk, name).update(claimed_by="", lease_expires_at=None)
                            break
                        running[source.pk] = pool.submit(session, source)
                    if time.monotonic() >= next_sweep:
                        next_sweep = time.monotonic() + INBOX_SWEEP_SECONDS
                        _inbox_sweep()
                    if time.monotonic() >= next_catalogue:
                        next_catalogue = time.monotonic() + CATALOGUE_SWEEP_SECONDS
                        catalogue_terms_sweep()
                except DatabaseError:
                    log.exception("listening runner lost the database", extra={"worker": name})
                    connection.close()
                    stop.wait(max(poll_interval, 1.0))
                    continue
                except Exception:  # noqa: BLE001 - the runner outlives its bugs
                    log.exception("listening runner error", extra={"worker": name})
                stop.wait(poll_interval)
        finally:
            log.info("listening runner stopping", extra={"worker": name, "sessions": len(running)})
