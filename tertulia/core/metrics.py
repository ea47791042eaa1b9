"""Prometheus metrics: request and ingestion counters, plus gauges read from the database at scrape time.

With several web processes (gunicorn workers) each process counts on its own, so a scrape that
lands on one worker would see only its share. Set PROMETHEUS_MULTIPROC_DIR to an empty directory
that all processes share: prometheus_client then keeps every counter in a file per process there,
and `exposition()` adds them up. Without it (the embedded default) counters live in memory.
"""

import logging
import os
import shutil
from collections import Counter
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)

MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")
if MULTIPROC_DIR:
    # prometheus_client writes its per-process files here as soon as the metrics below exist.
    Path(MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)

REQUESTS = PromCounter("tertulia_http_requests_total", "HTTP requests answered", ["method", "status"])
LATENCY = Histogram("tertulia_http_request_seconds", "Time to answer an HTTP request", ["method"])
EVENTS = PromCounter("tertulia_events_ingested_total", "Store events stored", ["source", "type"])
DUPLICATES = PromCounter("tertulia_events_duplicate_total", "Replayed events refused as duplicates", ["source"])


def observe_request(request, response, seconds: float) -> None:
    REQUESTS.labels(request.method, str(response.status_code)).inc()
    LATENCY.labels(request.method).observe(seconds)


def events_ingested(*, source: str, by_type: Counter, duplicates: int) -> None:
    for event_type, count in by_type.items():
        EVENTS.labels(source, event_type).inc(count)
    if duplicates:
        DUPLICATES.labels(source).inc(duplicates)


class DatabaseCollector:
    """Figures every process agrees on, read from the database when Prometheus scrapes.

    One grouped COUNT per table; the event count uses the (store, received_at) index.
    """

    def collect(self):
        from django.db.models import Count, Q

        from tertulia.commerce.models import Cart, CartStatus
        from tertulia.core.models import Store
        from tertulia.customers.models import Customer
        from tertulia.events.models import Event

        up = GaugeMetricFamily("tertulia_database_up", "1 if the database answered the scrape's queries")
        try:
            slugs = dict(Store.objects.values_list("pk", "slug"))
            events = Event.objects.values("store_id").annotate(n=Count("pk")).values_list("store_id", "n")
            carts = (
                Cart.objects.filter(status=CartStatus.OPEN).values("store_id").annotate(n=Count("pk"))
                .values_list("store_id", "n")
            )
            customers = (
                Customer.objects.filter(Q(merged_into__isnull=True) & Q(erased_at__isnull=True))
                .values("store_id").annotate(n=Count("pk")).values_list("store_id", "n")
            )
            figures = [
                ("tertulia_events_stored", "Store events kept in the event log", dict(events)),
                ("tertulia_carts_open", "Carts open (neither emptied nor converted)", dict(carts)),
                ("tertulia_customers", "Customer profiles (merged and erased ones not counted)", dict(customers)),
            ]
        except Exception:  # noqa: BLE001 - a scrape must still answer when the database does not
            logger.warning("database gauges unavailable", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for name, documentation, counts in figures:
            gauge = GaugeMetricFamily(name, documentation, labels=["store"])
            for store_id, slug in sorted(slugs.items(), key=lambda item: item[1]):
                gauge.add_metric([slug], counts.get(store_id, 0))
            yield gauge


_DATABASE = CollectorRegistry(auto_describe=False)
_DATABASE.register(DatabaseCollector())


def exposition() -> bytes:
    """The text a scrape answers with: process counters (all processes' in multiprocess mode) and database gauges."""
    if MULTIPROC_DIR:
        from prometheus_client import multiprocess

        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes, path=MULTIPROC_DIR)
        counters = generate_latest(processes)
    else:
        counters = generate_latest(REGISTRY)
    return counters + generate_latest(_DATABASE)


def multiprocess_reset() -> None:
    """Empty the multiprocess directory; call once before starting the web processes (stale files add up)."""
    if MULTIPROC_DIR and Path(MULTIPROC_DIR).is_dir():
        for entry in Path(MULTIPROC_DIR).iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def process_exited(pid: int) -> None:
    """For gunicorn's `child_exit` hook: drop a dead worker's live gauges (its counters are kept)."""
    if MULTIPROC_DIR:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, MULTIPROC_DIR)


# --- Background jobs ------------------------------------------------------------------------
JOBS_PROCESSED = PromCounter(
    "tertulia_jobs_processed_total", "Job attempts finished by workers", ["task", "outcome"]
)
JOB_SECONDS = Histogram("tertulia_job_seconds", "Time one job attempt ran", ["task"])


def job_processed(*, task: str, outcome: str, seconds: float) -> None:
    JOBS_PROCESSED.labels(task, outcome).inc()
    JOB_SECONDS.labels(task).observe(seconds)


class JobsCollector:
    """Job gauges read from the database at scrape time, so every web process reports the same truth."""

    STATUSES = ("queued", "running", "failed")

    def collect(self):
        from django.db import DatabaseError
        from django.db.models import Count
        from django.utils import timezone

        from tertulia.core.models import Job

        try:
            counts = dict(
                Job.objects.filter(status__in=self.STATUSES).values_list("status").annotate(n=Count("id")).order_by()
            )
            due = Job.objects.filter(status="queued", due_at__lte=timezone.now()).count()
        except DatabaseError:
            return
        by_status = GaugeMetricFamily("tertulia_jobs", "Jobs by status (queued, running, failed)", labels=["status"])
        for status in self.STATUSES:
            by_status.add_metric([status], counts.get(status, 0))
        yield by_status
        yield GaugeMetricFamily("tertulia_jobs_due", "Queued jobs whose due time has passed (the backlog)", value=due)


_DATABASE.register(JobsCollector())


# --- Outbound messages (channels.dispatch) ---------------------------------------------------
DELIVERIES = PromCounter(
    "tertulia_deliveries_total", "Deliveries handled by the dispatcher, by channel and outcome "
    "(sent, failed, skipped, postponed, retry)", ["channel", "outcome"]
)
DELIVERY_LAG = Histogram(
    "tertulia_delivery_lag_seconds", "Dispatch lag: a message's send time minus its due time", ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
)


def delivery_counted(*, channel: str, outcome: str) -> None:
    DELIVERIES.labels(channel, outcome).inc()


def delivery_lag(*, channel: str, seconds: float) -> None:
    DELIVERY_LAG.labels(channel).observe(max(seconds, 0.0))


def collector_register(collector) -> None:
    """Add an app's collector of database-read figures to what /metrics answers (called from AppConfig.ready)."""
    if collector.__class__.__name__ not in {type(c).__name__ for c in _COLLECTORS}:
        _COLLECTORS.append(collector)
        _DATABASE.register(collector)


_COLLECTORS: list = []


# --- Listening (listening.services) ---------------------------------------------------------------------
POSTS_HEARD = PromCounter(
    "tertulia_listening_posts_total", "Posts handed over by listening connectors, by network and outcome "
    "(stored, duplicate, ignored)", ["network", "outcome"]
)


def posts_heard(*, network: str, stored: int, duplicates: int, ignored: int) -> None:
    for outcome, count in (("stored", stored), ("duplicate", duplicates), ("ignored", ignored)):
        if count:
            POSTS_HEARD.labels(network, outcome).inc(count)
