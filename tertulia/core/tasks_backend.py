"""django.tasks backend that stores each enqueued task as a core.Job row (see docs/worker.md)."""

from django_tasks.backends.base import BaseTaskBackend


class DatabaseBackend(BaseTaskBackend):
    supports_defer = True
    supports_async_task = False
    supports_get_result = True

    def enqueue(self, task, args, kwargs):  # pragma: no cover - replaced by the worker implementation
        raise NotImplementedError
