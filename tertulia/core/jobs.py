"""Scheduling work that waits as durable core.Job rows: schedule, cancel, prune (design in docs/worker.md)."""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from django_tasks.base import Task
from django_tasks.utils import normalize_json

from tertulia.core.models import Job, JobStatus, Store

DEFAULT_MAX_ATTEMPTS = 5
FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class PermanentError(Exception):
    """Raised by a task when retrying cannot help (bad input, a deleted record): the job fails at once."""


class LeaseExpired(Exception):  # noqa: N818 - named for what happened, recorded as the job's error class
    """Recorded on a job whose worker stopped renewing its lease (killed, frozen, cut off from the database)."""


def default_max_attempts() -> int:
    return int(getattr(settings, "TERTULIA_JOB_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS))


def job_schedule(
    *,
    task: Task,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    due_at: datetime | None = None,
    unique_key: str | None = None,
    store: Store | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
) -> Job:
    """Write a job row for `task` in the caller's transaction and return it.

    The row is inserted in the current transaction, so work scheduled by code that later rolls back
    disappears with it and is never run. With `unique_key`, scheduling is idempotent: when a job with
    that key already exists (in any status) it is returned and nothing new is written, so put the
    moment or step in the key (`"cart-recovery:42:step-1"`).
    """
    if due_at is not None and timezone.is_naive(due_at):
        raise ValueError("due_at must be an aware datetime")
    job = Job(
        store=store,
        task_path=task.module_path,
        queue_name=task.queue_name,
        priority=task.priority if priority is None else priority,
        args=normalize_json(list(args)),
        kwargs=normalize_json(dict(kwargs or {})),
        due_at=due_at or task.run_after or timezone.now(),
        unique_key=unique_key,
        max_attempts=max_attempts or getattr(task, "max_attempts", None) or default_max_attempts(),
    )
    if unique_key is None:
        job.save(force_insert=True)
        return job
    # ON CONFLICT DO NOTHING: a concurrent scheduler with the same key waits for the other
    # transaction and then finds its row, instead of failing with an IntegrityError.
    Job.objects.bulk_create([job], ignore_conflicts=True)
    return Job.objects.get(unique_key=unique_key)


def job_cancel(*, job: Job | None = None, unique_key: str | None = None) -> bool:
    """Cancel a job that has not started; a running job finishes (its handler re-checks the world)."""
    if (job is None) == (unique_key is None):
        raise ValueError("pass exactly one of job or unique_key")
    rows = Job.objects.filter(status=JobStatus.QUEUED)
    rows = rows.filter(pk=job.pk) if job is not None else rows.filter(unique_key=unique_key)
    return bool(rows.update(status=JobStatus.CANCELLED, finished_at=timezone.now()))


def jobs_delete_finished(*, before: datetime) -> int:
    """Delete jobs that finished (succeeded, failed or cancelled) before `before`; returns how many."""
    deleted, _ = Job.objects.filter(status__in=FINISHED, finished_at__lt=before).delete()
    return deleted
