"""Prometheus metrics: request and ingestion counters, plus gauges read from the database at scrape time."""

from collections import Counter

from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram

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
