"""What a store listens for and hears: tracked terms, sources (connectors), mentions, rollups and alerts.

A Source is one connector instance (a Mastodon account, a Bluesky account, an X app, a feed, an inbound
webhook, a mailbox). It is also the durable row that waits: the listening runner (listening.runner) claims
a due source under a lease, runs its connector for one session and writes its cursor and health back.
Everything a connector hears is a Post; the posts that matter (they name a tracked term, or address the
store directly) become Mentions, classified once and stored once per (network, external id).
"""

from django.db import models
from django.utils.timezone import now

from tertulia.core.models import StoreScoped


class TermKind(models.TextChoices):
    BRAND = "brand", "Brand"
    PRODUCT = "product", "Product"
    SKU = "sku", "SKU"
    HASHTAG = "hashtag", "Hashtag"
    COMPETITOR = "competitor", "Competitor"
    KEYWORD = "keyword", "Keyword"


class TrackedTerm(StoreScoped):
    """One term a store listens for; with exclude=True a post containing it is not a mention at all.

    Product and SKU terms with a product are kept in step with the catalogue by
    `services.tracked_terms_sync_catalogue`; the rest are entered by the store.
    """

    term = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=TermKind.choices, default=TermKind.KEYWORD)
    exclude = models.BooleanField(default=False)
    product = models.ForeignKey("catalog.Product", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["store", "kind", "term", "exclude"], name="trackedterm_unique"),
        ]

    def __str__(self) -> str:
        return f"{'-' if self.exclude else ''}{self.kind}:{self.term}"


class Network(models.TextChoices):
    MASTODON = "mastodon", "Mastodon"
    BLUESKY = "bluesky", "Bluesky"
    X = "x", "X"
    RSS = "rss", "RSS/Atom"
    WEBHOOK = "webhook", "Inbound webhook"
    EMAIL = "email", "E-mail"


class Source(StoreScoped):
    """One connector of a store, with its credentials (encrypted), its cursor and its health."""

    network = models.CharField(max_length=16, choices=Network.choices)
    key = models.SlugField(max_length=64)  # the store's name for it; also names the inbound webhook URL
    name = models.CharField(max_length=100, blank=True)
    settings = models.JSONField(default=dict, blank=True)  # non-secret, per network (listening.connectors)
    secrets_encrypted = models.TextField(blank=True)  # Fernet token of a JSON object (channels.credentials)
    enabled = models.BooleanField(default=True)
    # Where the connector stopped, so a restart resumes with no gap and no duplicate (its shape is the connector's).
    cursor = models.JSONField(default=dict, blank=True)
    # The row that waits: due at next_run_at, claimed by one runner under a lease.
    next_run_at = models.DateTimeField(default=now)
    claimed_by = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # The platform's request budget (fixed window), kept across sessions and restarts.
    rate_window_started_at = models.DateTimeField(null=True, blank=True)
    rate_window_requests = models.PositiveIntegerField(default=0)
    # Health, shown in the dashboard and at /metrics.
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_error_code = models.CharField(max_length=32, blank=True)
    last_error = models.TextField(blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    failing_since = models.DateTimeField(null=True, blank=True)  # first failure of the current outage
    newest_post_at = models.DateTimeField(null=True, blank=True)  # the newest post heard (for the lag)
    lag_seconds = models.FloatField(null=True, blank=True)  # how far behind the platform the cursor is
    posts_seen = models.BigIntegerField(default=0)
    mentions_stored = models.BigIntegerField(default=0)
    duplicates_seen = models.BigIntegerField(default=0)
    malformed_count = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=now)
    updated_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "key"], name="source_unique_key")]
        indexes = [models.Index(fields=["enabled", "next_run_at"], name="source_due")]

    def __str__(self) -> str:
        return f"{self.network}:{self.key}"


class MentionKind(models.TextChoices):
    POST = "post", "Post"  # heard because it names a tracked term
    MENTION = "mention", "Mention"  # addressed to the store's own account (@store, a reply to it)
    DIRECT = "direct", "Direct message"  # a private message to the store (a DM, an e-mail)


class Sentiment(models.TextChoices):
    NEGATIVE = "negative", "Negative"
    NEUTRAL = "neutral", "Neutral"
    POSITIVE = "positive", "Positive"


class Intent(models.TextChoices):
    QUESTION = "question", "Question"
    COMPLAINT = "complaint", "Complaint"
    PURCHASE_INTENT = "purchase_intent", "Purchase intent"
    PRAISE = "praise", "Praise"
    OTHER = "other", "Other"


class Mention(StoreScoped):
    """A post that matters to the store, as heard, with what it names and what it says."""

    source = models.ForeignKey(Source, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    network = models.CharField(max_length=16, choices=Network.choices)
    external_id = models.CharField(max_length=400)  # status id, at:// URI, tweet id, entry id, Message-ID
    kind = models.CharField(max_length=16, choices=MentionKind.choices, default=MentionKind.POST)
    url = models.CharField(max_length=1000, blank=True)
    author_id = models.CharField(max_length=400, blank=True)  # account id, DID, user id, address
    author_handle = models.CharField(max_length=320, blank=True)
    author_name = models.CharField(max_length=200, blank=True)
    author_followers = models.PositiveIntegerField(null=True, blank=True)  # reach
    title = models.CharField(max_length=300, blank=True)  # feeds and e-mail have one
    text = models.TextField()
    posted_at = models.DateTimeField()
    received_at = models.DateTimeField(default=now)
    in_reply_to = models.CharField(max_length=400, blank=True)  # external id of the post it answers
    thread_root = models.CharField(max_length=400, blank=True)  # external id of its thread's first post
    # What a reply needs besides the id (Bluesky's uri+cid of parent and root, e-mail's References...).
    reply_ref = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)  # likes, reposts, replies as the platform counts them
    terms = models.JSONField(default=list, blank=True)  # the tracked terms it names
    products = models.ManyToManyField("catalog.Product", blank=True, related_name="+")
    platform_language = models.CharField(max_length=16, blank=True)  # what the platform says
    language = models.CharField(max_length=8, blank=True)  # what our classifier says
    sentiment = models.CharField(max_length=8, choices=Sentiment.choices)
    sentiment_score = models.FloatField(default=0.0)  # P(positive) - P(negative), in [-1, 1]
    intent = models.CharField(max_length=16, choices=Intent.choices)
    toxicity = models.FloatField(default=0.0)
    customer = models.ForeignKey("customers.Customer", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="mentions")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["store", "network", "external_id"], name="mention_once"),
        ]
        indexes = [
            models.Index(fields=["store", "posted_at"], name="mention_recent"),
            models.Index(fields=["store", "sentiment", "posted_at"], name="mention_by_sentiment"),
            models.Index(fields=["store", "intent", "posted_at"], name="mention_by_intent"),
            models.Index(fields=["store", "received_at"], name="mention_received"),
        ]

    def __str__(self) -> str:
        return f"{self.network}:{self.external_id}"


class MentionHour(StoreScoped):
    """Mentions per store, hour (UTC) and network, by sentiment and intent: spikes and charts read this."""

    hour = models.DateTimeField()
    network = models.CharField(max_length=16)
    total = models.PositiveIntegerField(default=0)
    negative = models.PositiveIntegerField(default=0)
    neutral = models.PositiveIntegerField(default=0)
    positive = models.PositiveIntegerField(default=0)
    question = models.PositiveIntegerField(default=0)
    complaint = models.PositiveIntegerField(default=0)
    purchase_intent = models.PositiveIntegerField(default=0)
    praise = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "hour", "network"], name="mentionhour_unique")]


class MalformedPayload(StoreScoped):
    """Something a platform sent that could not be read: kept as received, for inspection."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="malformed")
    received_at = models.DateTimeField(default=now)
    code = models.CharField(max_length=32)  # invalid_json, unexpected_shape, missing_field...
    error = models.TextField()
    raw = models.TextField()  # the body as received (cut at MAX_RAW characters)

    class Meta:
        indexes = [models.Index(fields=["store", "source", "received_at"], name="malformed_recent")]


class AlertKind(models.TextChoices):
    NEGATIVE_SPIKE = "negative_spike", "Spike of negative mentions"
    CONNECTOR_DOWN = "connector_down", "Connector broken"


class Alert(StoreScoped):
    """Something the team must know now: a spike of negative mentions, a connector that stopped working.

    Open while `closed_at` is empty; `key` makes each one once (the hour of a spike, the source and the
    start of an outage). The team is told in the dashboard and by e-mail (notified_at).
    """

    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    key = models.CharField(max_length=200)
    source = models.ForeignKey(Source, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts")
    details = models.JSONField(default=dict, blank=True)
    opened_at = models.DateTimeField(default=now)
    closed_at = models.DateTimeField(null=True, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=150, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "kind", "key"], name="alert_once")]
        indexes = [models.Index(fields=["store", "closed_at", "opened_at"], name="alert_open")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.key}"
