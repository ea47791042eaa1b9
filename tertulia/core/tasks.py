"""Background tasks of the core app: housekeeping of the job table."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_tasks import task

from tertulia.core.jobs import jobs_delete_finished


@task(priority=-10)
def jobs_prune(days: int | None = None) -> int:
    """Delete finished jobs older than `days` (default TERTULIA_JOBS_KEEP_DAYS, 14); safe to run twice."""
    keep = days if days is not None else int(getattr(settings, "TERTULIA_JOBS_KEEP_DAYS", 14))
    return jobs_delete_finished(before=timezone.now() - timedelta(days=keep))
