"""Listening's and the inbox's figures at /metrics, read from the database at scrape time (every process agrees)."""

import logging

from django.db import DatabaseError
from django.db.models import Count, Q
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger("tertulia.listening")


class ListeningCollector:
    """Per source: up, failures in a row, seconds since the last success, lag, and its counters; open alerts."""

    def collect(self):
        from tertulia.listening.models import Alert, Source
        from tertulia.listening.runner import source_is_down

        try:
            sources = list(Source.objects.select_related("store").order_by("store__slug", "key"))
            alerts = list(Alert.objects.filter(closed_at__isnull=True).values("store__slug", "kind")
                          .annotate(n=Count("id")).order_by())
        except DatabaseError:
            return
        moment = timezone.now()
        labels = ["store", "source", "network"]
        up = GaugeMetricFamily("tertulia_listening_source_up",
                               "1 when the source's last session worked (or it never failed), 0 when it is failing",
                               labels=labels)
        down = GaugeMetricFamily("tertulia_listening_source_down",
                                 "1 when the source is broken for long enough to alert the team", labels=labels)
        failures = GaugeMetricFamily("tertulia_listening_source_consecutive_failures",
                                     "Failed sessions in a row", labels=labels)
        since = GaugeMetricFamily("tertulia_listening_source_seconds_since_success",
                                  "Seconds since the last successful session (absent before the first)", labels=labels)
        lag = GaugeMetricFamily("tertulia_listening_source_lag_seconds",
                                "How far behind the platform the source's cursor was at its last emit", labels=labels)
        counters = {
            "posts_seen": CounterMetricFamily("tertulia_listening_source_posts", "Posts the source handed over",
                                              labels=labels),
            "mentions_stored": CounterMetricFamily("tertulia_listening_source_mentions",
                                                   "Mentions the source stored", labels=labels),
            "duplicates_seen": CounterMetricFamily("tertulia_listening_source_duplicates",
                                                   "Posts the source heard again (stored once)", labels=labels),
            "malformed_count": CounterMetricFamily("tertulia_listening_source_malformed",
                                                   "Payloads the source could not read (kept for inspection)",
                                                   labels=labels),
        }
        for source in sources:
            if not source.enabled:
                continue
            values = [source.store.slug, source.key, source.network]
            up.add_metric(values, 0 if source.consecutive_failures else 1)
            down.add_metric(values, 1 if source_is_down(source) else 0)
            failures.add_metric(values, source.consecutive_failures)
            if source.last_success_at is not None:
                since.add_metric(values, max((moment - source.last_success_at).total_seconds(), 0.0))
            if source.lag_seconds is not None:
                lag.add_metric(values, source.lag_seconds)
            for name, family in counters.items():
                family.add_metric(values, getattr(source, name))
        yield from (up, down, failures, since, lag, *counters.values())
        open_alerts = GaugeMetricFamily("tertulia_listening_alerts_open", "Alerts open, by kind",
                                        labels=["store", "kind"])
        for row in alerts:
            open_alerts.add_metric([row["store__slug"], row["kind"]], row["n"])
        yield open_alerts


class InboxCollector:
    """Conversations per status, and how many are past an SLA target right now."""

    def collect(self):
        from tertulia.inbox.models import Conversation
        from tertulia.inbox.selectors import breaching_filter

        try:
            rows = list(Conversation.objects.values("store__slug", "status").annotate(n=Count("id")).order_by())
            breaching = list(Conversation.objects.filter(breaching_filter(timezone.now()))
                             .values("store__slug").annotate(n=Count("id")).order_by())
            unassigned = list(Conversation.objects.filter(Q(status="open") & Q(assignee__isnull=True))
                              .values("store__slug").annotate(n=Count("id")).order_by())
        except DatabaseError:
            return
        by_status = GaugeMetricFamily("tertulia_inbox_conversations", "Conversations by status",
                                      labels=["store", "status"])
        for row in rows:
            by_status.add_metric([row["store__slug"], row["status"]], row["n"])
        yield by_status
        late = GaugeMetricFamily("tertulia_inbox_conversations_breaching_sla",
                                 "Open conversations past their first-response or resolution target", labels=["store"])
        for row in breaching:
            late.add_metric([row["store__slug"]], row["n"])
        yield late
        waiting = GaugeMetricFamily("tertulia_inbox_conversations_unassigned", "Open conversations nobody has",
                                    labels=["store"])
        for row in unassigned:
            waiting.add_metric([row["store__slug"]], row["n"])
        yield waiting
