"""Tasks used only by tests/test_worker.py; the worker subprocess imports them too (PYTHONPATH)."""

import os
import time
from pathlib import Path

from django_tasks import task

from tertulia.core.jobs import PermanentError
from tertulia.core.models import Job


def _append(path: str, line: str) -> None:
    # O_APPEND keeps each short line whole even when several processes write at once.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@task()
def record(path: str, label: str, pause: float = 0.0) -> str:
    _append(path, f"{label} {os.getpid()}")
    if pause:
        time.sleep(pause)
    return label


@task()
def add(a: int, b: int) -> int:
    return a + b


@task(priority=5)
def urgent(path: str, label: str) -> None:
    _append(path, label)


@task(max_attempts=3)
def always_fails(message: str) -> None:
    raise RuntimeError(message)


@task()
def refuses(message: str) -> None:
    raise PermanentError(message)


@task(takes_context=True)
def which_attempt(context) -> int:
    return context.attempt


@task(takes_context=True)
def waits_for_renewal(context, limit: float = 30.0) -> bool:
    """Returns True once a side thread has pushed this job's lease further out while it ran."""
    job_id = int(context.task_result.id)
    first = Job.objects.get(pk=job_id).lease_expires_at
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if Job.objects.get(pk=job_id).lease_expires_at > first:
            return True
        time.sleep(0.05)
    return False


@task()
def gated_record(path: str, label: str, gate: str | None = None) -> None:
    """Writes `start`, waits until the file `gate` exists (if given), then writes `end`."""
    _append(path, f"start {label} {os.getpid()}")
    if gate:
        while not Path(gate).exists():
            time.sleep(0.05)
    _append(path, f"end {label} {os.getpid()}")
