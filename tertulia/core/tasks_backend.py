"""django.tasks backend that stores each enqueued task as a core.Job row (see docs/worker.md).

`Task.enqueue()` inserts the row in the caller's transaction: if that transaction rolls back, the
job is gone with it and no worker ever sees it, so enqueueing from inside business logic is safe
without `transaction.on_commit`. The worker (tertulia.core.worker) runs the rows.
"""

from dataclasses import dataclass
from typing import Any

from django.utils.module_loading import import_string
from django.utils.version import PY311
from django_tasks import TaskResult, TaskResultStatus
from django_tasks.backends.base import BaseTaskBackend
from django_tasks.base import Task, TaskError
from django_tasks.exceptions import InvalidTaskError, TaskResultDoesNotExist
from django_tasks.signals import task_enqueued

from tertulia.core.jobs import job_schedule
from tertulia.core.models import Job, JobStatus

RESULT_STATUS = {
    JobStatus.QUEUED: TaskResultStatus.READY,
    JobStatus.RUNNING: TaskResultStatus.RUNNING,
    JobStatus.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    JobStatus.FAILED: TaskResultStatus.FAILED,
    # django.tasks has no "cancelled": a cancelled job will never succeed, which is what FAILED says.
    JobStatus.CANCELLED: TaskResultStatus.FAILED,
}


@dataclass(frozen=True, slots=PY311, kw_only=True)  # type: ignore[literal-required]
class DatabaseTask(Task):
    """A task with a retry budget: `@task(max_attempts=3)`; None means the project default."""

    max_attempts: int | None = None


class DatabaseBackend(BaseTaskBackend):
    task_class = DatabaseTask
    supports_defer = True
    supports_async_task = False
    supports_get_result = True
    supports_priority = True

    def validate_task(self, task: Task) -> None:
        super().validate_task(task)
        max_attempts = getattr(task, "max_attempts", None)
        if max_attempts is not None and max_attempts < 1:
            raise InvalidTaskError("max_attempts must be at least 1.")

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        self.validate_task(task)
        job = job_schedule(task=task, args=args, kwargs=kwargs)
        result = job_result(job, task=task)
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        try:
            job = Job.objects.get(pk=int(result_id))
        except (ValueError, Job.DoesNotExist) as exc:
            raise TaskResultDoesNotExist(result_id) from exc
        return job_result(job)


def job_result(job: Job, *, task: Task | None = None) -> TaskResult:
    """The django.tasks view of a job row."""
    errors = []
    if job.last_error:
        errors.append(TaskError(exception_class_path=job.last_error_class or "builtins.Exception", traceback=job.last_error))
    task = task or import_string(job.task_path)
    result = TaskResult(
        task=task,
        id=str(job.pk),
        status=RESULT_STATUS[JobStatus(job.status)],
        enqueued_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        last_attempted_at=job.started_at,
        args=job.args,
        kwargs=job.kwargs,
        backend=task.backend,
        errors=errors,
        # django.tasks counts attempts as len(worker_ids); the row keeps only the latest claimant.
        worker_ids=[job.claimed_by] * job.attempts,
    )
    object.__setattr__(result, "_return_value", job.return_value)
    return result
