"""The worker: claims due core.Job rows under a lease, runs their tasks, retries with backoff (docs/worker.md).

Delivery is at least once. A job whose worker dies (or loses its lease) runs again, so every task
must be safe to run twice: re-check the world when it runs and write idempotently.
"""

import logging
import math
import os
import random
import secrets
import socket
import threading
import time
import traceback
from datetime import UTC, datetime, timedelta
from datetime import time as clock

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone
from django.utils.module_loading import import_string
from django_tasks import TaskContext
from django_tasks.base import Task
from django_tasks.utils import get_module_path, normalize_json

from tertulia.core import metrics
from tertulia.core.db import db_datetime, is_postgres
from tertulia.core.jobs import LeaseExpired, PermanentError, job_schedule
from tertulia.core.models import Job, JobStatus
from tertulia.core.tasks_backend import job_result

__all__ = ["PermanentError", "jobs_reclaim_expired", "retry_delay", "run_worker"]

log = logging.getLogger("tertulia.worker")

DEFAULT_LEASE_SECONDS = 60.0
HOUSEKEEPING_EVERY_SECONDS = 3600.0


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def run_worker(
    *,
    name: str | None = None,
    stop: threading.Event | None = None,
    poll_interval: float = 1.0,
    once: bool = False,
    concurrency: int = 1,
    lease_seconds: float | None = None,
    queues: list[str] | None = None,
    housekeeping: bool = True,
    dispatch: bool = True,
    listen: bool = True,
) -> int:
    """Run due jobs until `stop` is set (or, with `once`, until nothing is due); return how many ran.

    Safe to call from any thread: it installs no signal handlers. Setting `stop` lets the job in
    hand finish and be recorded before returning. `concurrency` > 1 runs that many claim loops in
    threads, each with its own database connection. `housekeeping` schedules the daily prune of
    old jobs (idempotently, so any number of workers may do it). `dispatch` also runs the message
    dispatcher (channels.dispatch) in a thread of its own, stopped by the same event; with `once`
    it sends what is due after the jobs ran. `listen` also runs the listening runner (listening.runner:
    connectors of every store, and the inbox's sweep) in a thread of its own; with `once` it runs each due
    source once.
    """
    stop = stop or threading.Event()
    base_name = (name or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}")[:90]
    jobs = {"base_name": base_name, "stop": stop, "poll_interval": poll_interval, "once": once,
            "concurrency": concurrency, "lease_seconds": lease_seconds, "queues": queues, "housekeeping": housekeeping}
    if once:
        processed = _run_jobs(**jobs)
        if listen:
            _listen_once(name=base_name)
        if dispatch:
            _dispatch_once(name=base_name)
        return processed
    sidekicks = []
    if dispatch:
        sidekicks.append(threading.Thread(target=_dispatch_loop, args=(base_name, stop, poll_interval),
                                          name="tertulia-dispatcher", daemon=True))
    if listen:
        sidekicks.append(threading.Thread(target=_listen_loop, args=(base_name, stop, poll_interval),
                                          name="tertulia-listening", daemon=True))
    for thread in sidekicks:
        thread.start()
    try:
        return _run_jobs(**jobs)
    finally:
        # The job loops only end when asked to (or on an error): the dispatcher and the listeners go with them.
        stop.set()
        for thread in sidekicks:
            while thread.is_alive():
                thread.join(timeout=0.5)


def _dispatch_loop(base_name: str, stop: threading.Event, poll_interval: float) -> None:
    from tertulia.channels.dispatch import DEFAULT_POLL_SECONDS, run_dispatcher

    try:
        run_dispatcher(stop=stop, name=f"{base_name}/dispatch"[:100], poll_interval=min(poll_interval, DEFAULT_POLL_SECONDS))
    except BaseException:  # run_dispatcher catches its own errors; this is the last word before the thread ends
        log.exception("the dispatcher stopped with an error", extra={"worker": base_name})
    finally:
        _close_connection()


def _listen_loop(base_name: str, stop: threading.Event, poll_interval: float) -> None:
    from tertulia.listening.runner import run_listeners

    try:
        run_listeners(stop=stop, name=f"{base_name}/listen"[:100], poll_interval=min(poll_interval, 1.0))
    except BaseException:  # run_listeners catches its own errors; this is the last word before the thread ends
        log.exception("the listening runner stopped with an error", extra={"worker": base_name})
    finally:
        _close_connection()


def _listen_once(*, name: str) -> None:
    from tertulia.listening.runner import listen_once

    try:
        listen_once(worker=f"{name}/listen"[:100])
    finally:
        _close_connection()


def _dispatch_once(*, name: str) -> None:
    from tertulia.channels.dispatch import dispatch_run, sweep_triggers

    try:
        sweep_triggers()
        dispatch_run(worker=f"{name}/dispatch"[:100])
    finally:
        _close_connection()


def _run_jobs(*, base_name, stop, poll_interval, once, concurrency, lease_seconds, queues, housekeeping) -> int:
    lease = float(lease_seconds or _setting("TERTULIA_JOB_LEASE_SECONDS", DEFAULT_LEASE_SECONDS))
    options = {"stop": stop, "poll_interval": poll_interval, "once": once, "lease": lease, "queues": queues}
    if concurrency <= 1:
        try:
            return _ClaimLoop(name=base_name, housekeeping=housekeeping, **options).run()
        finally:
            _close_connection()

    counts = [0] * concurrency
    errors: list[BaseException] = []

    def loop(index: int) -> None:
        try:
            counts[index] = _ClaimLoop(
                name=f"{base_name}/{index + 1}", housekeeping=housekeeping and index == 0, **options
            ).run()
        except BaseException as exc:  # surfaced to the caller below
            errors.append(exc)
            stop.set()
        finally:
            _close_connection()

    threads = [
        threading.Thread(target=loop, args=(index,), name=f"tertulia-worker-{index + 1}", daemon=True)
        for index in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        # A timeout keeps the calling thread responsive to signals while it waits.
        while thread.is_alive():
            thread.join(timeout=0.5)
    if errors:
        raise errors[0]
    return sum(counts)


class _ClaimLoop:
    def __init__(self, *, name, stop, poll_interval, once, lease, queues, housekeeping) -> None:
        self.name = name
        self.stop = stop
        self.poll_interval = poll_interval
        self.once = once
        self.lease = lease
        self.queues = list(queues or [])
        self.housekeeping = housekeeping
        # Expired leases are looked for about twice per lease, never less often than every 10 s.
        self.reclaim_every = min(lease / 2, 10.0)

    def run(self) -> int:
        processed = 0
        last_reclaim = last_housekeeping = -math.inf
        log.info("worker started", extra={"worker": self.name, "lease_seconds": self.lease, "once": self.once})
        try:
            while not self.stop.is_set():
                try:
                    _refresh_connection()
                    if time.monotonic() - last_reclaim >= self.reclaim_every:
                        jobs_reclaim_expired()
                        last_reclaim = time.monotonic()
                    if self.housekeeping and time.monotonic() - last_housekeeping >= HOUSEKEEPING_EVERY_SECONDS:
                        housekeeping_schedule()
                        last_housekeeping = time.monotonic()
                    job = job_claim(worker=self.name, lease=self.lease, queues=self.queues)
                    if job is None:
                        if self.once:
                            break
                        self.stop.wait(self.poll_interval)
                        continue
                    job_execute(job=job, worker=self.name, lease=self.lease)
                    processed += 1
                except DatabaseError:
                    if self.once:
                        raise
                    # The database went away (restart, failover): a job in hand keeps its lease
                    # and comes back when it expires. Wait, reconnect, carry on.
                    log.exception("worker lost the database", extra={"worker": self.name})
                    _close_connection()
                    self.stop.wait(self.poll_interval)
        finally:
            log.info("worker stopped", extra={"worker": self.name, "processed": processed})
        return processed


def job_claim(*, worker: str, lease: float, queues: list[str] | None = None) -> Job | None:
    """Claim the most urgent due job for `worker`, or None.

    PostgreSQL: `FOR UPDATE SKIP LOCKED` lets any number of workers claim side by side without
    waiting on or double-claiming each other's rows. SQLite has one writer at a time: the same
    UPDATE ... RETURNING runs inside an IMMEDIATE transaction (settings), which takes the write
    lock first, so two claimers can never pick the same row.
    """
    moment = timezone.now()
    if not is_postgres() and not _due_exists(moment, queues):
        # Idle polls stay read-only, so an idle worker never takes SQLite's single write lock.
        return None
    table = Job._meta.db_table
    queue_sql = f" AND queue_name IN ({', '.join(['%s'] * len(queues))})" if queues else ""
    lock_sql = " FOR UPDATE SKIP LOCKED" if is_postgres() else ""
    sql = (
        f"UPDATE {table} SET status = %s, claimed_by = %s, lease_expires_at = %s, started_at = %s, "  # noqa: S608 - fixed identifiers
        f"attempts = attempts + 1 WHERE id = (SELECT id FROM {table} WHERE status = %s AND due_at <= %s"
        f"{queue_sql} ORDER BY priority DESC, due_at, id LIMIT 1{lock_sql}) RETURNING id"
    )
    params = [
        JobStatus.RUNNING.value,
        worker,
        db_datetime(moment + timedelta(seconds=lease)),
        db_datetime(moment),
        JobStatus.QUEUED.value,
        db_datetime(moment),
        *(queues or []),
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return Job.objects.get(pk=row[0]) if row else None


def _due_exists(moment: datetime, queues: list[str] | None) -> bool:
    due = Job.objects.filter(status=JobStatus.QUEUED, due_at__lte=moment)
    return (due.filter(queue_name__in=queues) if queues else due).exists()


def jobs_reclaim_expired() -> int:
    """Give back the jobs of workers that stopped renewing their lease; returns how many.

    A job with attempts left goes back to queued (due at once); one that has used them all fails,
    so a job that kills its worker every time cannot loop forever.
    """
    moment = timezone.now()
    expired = Job.objects.filter(status=JobStatus.RUNNING, lease_expires_at__lt=moment)
    error = {
        "last_error": Concat(Value("lease expired; the job was claimed by "), F("claimed_by")),
        "last_error_class": get_module_path(LeaseExpired),
        "lease_expires_at": None,
    }
    failed = expired.filter(attempts__gte=F("max_attempts")).update(
        status=JobStatus.FAILED, finished_at=moment, **error
    )
    requeued = expired.update(status=JobStatus.QUEUED, due_at=moment, **error)
    if failed or requeued:
        log.warning("expired leases reclaimed", extra={"requeued": requeued, "failed": failed})
    return failed + requeued


def retry_delay(attempt: int) -> timedelta:
    """Exponential backoff with jitter: base * 2**(attempt-1), capped, times a random 0.5-1.0.

    The jitter spreads retries of jobs that failed together (an outage) so they do not return
    together; its range keeps every delay longer than the one before, up to the cap.
    """
    base = _setting("TERTULIA_JOB_RETRY_BASE_SECONDS", 10.0)
    cap = _setting("TERTULIA_JOB_RETRY_MAX_SECONDS", 3600.0)
    return timedelta(seconds=min(cap, base * 2 ** max(attempt - 1, 0)) * (0.5 + random.random() / 2))


def job_execute(*, job: Job, worker: str, lease: float) -> str:
    """Run one claimed job and record the outcome: succeeded, retry or failed."""
    started = time.monotonic()
    extra = {"worker": worker, "job_id": job.pk, "task": job.task_path, "attempt": job.attempts}
    log.info("job started", extra=extra)
    value = error = None
    with _LeaseKeeper(job_id=job.pk, worker=worker, lease=lease):
        try:
            task = _task_load(job.task_path)
            result = job_result(job, task=task)
            if task.takes_context:
                value = task.call(TaskContext(task_result=result), *job.args, **job.kwargs)
            else:
                value = task.call(*job.args, **job.kwargs)
            value = normalize_json(value)
        except Exception as exc:  # noqa: BLE001 - any failure of a task is recorded on its row
            error = exc

    moment = timezone.now()
    mine = Job.objects.filter(pk=job.pk, claimed_by=worker, status=JobStatus.RUNNING)
    if error is None:
        outcome = JobStatus.SUCCEEDED.value
        changes = {"status": JobStatus.SUCCEEDED, "return_value": value, "finished_at": moment}
    else:
        changes = {"last_error": "".join(traceback.format_exception(error)), "last_error_class": get_module_path(type(error))}
        if isinstance(error, PermanentError) or job.attempts >= job.max_attempts:
            outcome = JobStatus.FAILED.value
            changes |= {"status": JobStatus.FAILED, "finished_at": moment}
        else:
            outcome = "retry"
            changes |= {"status": JobStatus.QUEUED, "due_at": moment + retry_delay(job.attempts)}
    recorded = mine.update(lease_expires_at=None, **changes)

    seconds = time.monotonic() - started
    metrics.job_processed(task=job.task_path, outcome=outcome, seconds=seconds)
    extra |= {"outcome": outcome, "seconds": round(seconds, 4)}
    if not recorded:
        # Our lease expired and another worker reclaimed the row: it will run (or ran) again.
        log.warning("job finished after its lease was lost", extra=extra)
    elif error is None:
        log.info("job succeeded", extra=extra)
    else:
        extra |= {"error": f"{type(error).__name__}: {error}"}
        log.log(logging.ERROR if outcome == "failed" else logging.WARNING, f"job {outcome}", extra=extra)
    return outcome


def housekeeping_schedule() -> Job:
    """Make sure the next daily prune of old jobs exists (03:00 UTC); the key makes it once per day."""
    from tertulia.core.tasks import jobs_prune

    moment = timezone.now()
    due = datetime.combine(moment.astimezone(UTC).date(), clock(3, 0), tzinfo=UTC)
    if due <= moment:
        due += timedelta(days=1)
    return job_schedule(task=jobs_prune, due_at=due, unique_key=f"core.jobs_prune:{due.date().isoformat()}")


def _task_load(path: str) -> Task:
    task = import_string(path)
    if not isinstance(task, Task):
        raise PermanentError(f"{path} is not a django.tasks task")
    return task


class _LeaseKeeper:
    """Renews a running job's lease from a side thread, so a long task keeps its claim."""

    def __init__(self, *, job_id: int, worker: str, lease: float) -> None:
        self.job_id = job_id
        self.worker = worker
        self.lease = lease
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._renew, name=f"tertulia-lease-{job_id}", daemon=True)

    def __enter__(self) -> "_LeaseKeeper":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.done.set()
        self.thread.join()

    def _renew(self) -> None:
        try:
            while not self.done.wait(self.lease / 3):
                try:
                    renewed = Job.objects.filter(
                        pk=self.job_id, claimed_by=self.worker, status=JobStatus.RUNNING
                    ).update(lease_expires_at=timezone.now() + timedelta(seconds=self.lease))
                except DatabaseError:
                    log.exception("lease renewal failed", extra={"job_id": self.job_id, "worker": self.worker})
                    _close_connection()
                    continue
                if not renewed:
                    log.warning("lease lost", extra={"job_id": self.job_id, "worker": self.worker})
                    return
        finally:
            _close_connection()


def _refresh_connection() -> None:
    # Like Django does around each request: drop a connection that is broken or past CONN_MAX_AGE.
    # Never inside an atomic block (a test's transaction), where closing would poison it.
    if not connection.in_atomic_block:
        close_old_connections()


def _close_connection() -> None:
    if not connection.in_atomic_block:
        connection.close()
