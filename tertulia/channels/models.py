"""Outbound messages: every message Tertulia sends is a Delivery, each try of it a DeliveryAttempt.

A Delivery is also the durable row that waits: a journey step due in an hour is a Delivery with
status `scheduled` and `due_at`, claimed by the dispatcher in the worker under a lease (docs/channels.md).
"""

from datetime import time

from django.db import models
from django.utils.timezone import now

from tertulia.core.models import StoreScoped


class DeliveryStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"  # waiting for due_at (also after a postponement or a transient error)
    SENDING = "sending", "Sending"  # claimed by a dispatcher; lease_expires_at says until when
    SENT = "sent", "Sent"  # the provider accepted it
    DELIVERED = "delivered", "Delivered"  # the provider reported delivery (SMS status callback)
    FAILED = "failed", "Failed"  # permanent error, or retries used up
    SKIPPED = "skipped", "Skipped"  # not sent on purpose: exit condition, no consent, no address...
    CANCELLED = "cancelled", "Cancelled"  # the enrollment ended before the step was due


class Delivery(StoreScoped):
    customer = models.ForeignKey("customers.Customer", null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries")
    # customers.Channel (email, sms, social_dm), or a network a reply goes out on (mastodon, bluesky, x).
    channel = models.CharField(max_length=16)
    # What the message is for. Journey steps fill the three below; other senders (the inbox) leave them empty.
    enrollment = models.ForeignKey("journeys.Enrollment", null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries")
    journey_key = models.CharField(max_length=32, blank=True)
    step_key = models.CharField(max_length=32, blank=True)
    variant = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.SCHEDULED)
    due_at = models.DateTimeField()
    claimed_by = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # Why it was postponed, skipped or failed: a short machine code (quiet_hours, frequency_cap, no_consent,
    # order_placed, cart_emptied, unsubscribed, answered, no_address, provider_error...) and a message.
    reason = models.CharField(max_length=32, blank=True)
    detail = models.TextField(blank=True)
    # What was sent, kept as the shopper saw it.
    language = models.CharField(max_length=8, blank=True)
    to_address = models.CharField(max_length=320, blank=True)
    subject = models.CharField(max_length=300, blank=True)
    body_text = models.TextField(blank=True)
    body_html = models.TextField(blank=True)
    links = models.JSONField(default=list, blank=True)  # target URLs in order; /r/<token> names one by index
    # A reply (the inbox): the provider's id of the message answered, what else the provider needs to thread
    # it (Bluesky's parent and root refs, e-mail's References and subject, Mastodon's visibility), and which
    # account sends it ("" = the store's ChannelAccount for the channel; "source:<id>" = a listening source).
    # A reply answers a message the person sent, so the sending rules check it differently (channels.rules).
    reply_to = models.CharField(max_length=450, blank=True)
    reply_context = models.JSONField(default=dict, blank=True)
    sender = models.CharField(max_length=64, blank=True)
    provider = models.CharField(max_length=32, blank=True)
    provider_message_id = models.CharField(max_length=200, blank=True, db_index=True)
    provider_status = models.CharField(max_length=32, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=now)
    updated_at = models.DateTimeField(default=now)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            # A step is sent at most once per enrollment, whatever replays or races happen.
            models.UniqueConstraint(
                fields=["enrollment", "step_key"], condition=models.Q(enrollment__isnull=False), name="delivery_one_per_step"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "due_at"], name="delivery_due"),
            models.Index(fields=["store", "customer", "channel", "sent_at"], name="delivery_recent_per_person"),
            models.Index(fields=["store", "journey_key", "created_at"], name="delivery_by_journey"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.journey_key}/{self.step_key} -> {self.customer_id} ({self.status})"


class AttemptOutcome(models.TextChoices):
    SENT = "sent", "Sent"
    TRANSIENT_ERROR = "transient_error", "Transient error"
    PERMANENT_ERROR = "permanent_error", "Permanent error"


class DeliveryAttempt(StoreScoped):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices)
    provider = models.CharField(max_length=32, blank=True)
    # The provider's answer as received (status code, body), so a failure can be explained later.
    provider_response = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="attempt_unique_number")]


class DeliverySettings(StoreScoped):
    """A store's sending rules (channels.rules): the frequency cap and the quiet hours.

    A store without a row gets the defaults below; `delivery_settings_update` writes one.
    """

    # Least time between two journey messages to one person on one channel, across all journeys; 0 = no cap.
    frequency_cap_seconds = models.PositiveIntegerField(default=16 * 3600)
    # Local time of the person (their time zone, else the store's); a start equal to the end means none.
    quiet_hours_start = models.TimeField(default=time(21, 0))
    quiet_hours_end = models.TimeField(default=time(8, 0))
    updated_at = models.DateTimeField(default=now)

    class Meta:
        verbose_name_plural = "delivery settings"
        constraints = [models.UniqueConstraint(fields=["store"], name="delivery_settings_one_per_store")]


class ChannelAccount(StoreScoped):
    """A store's account at a provider (Twilio, a Mastodon instance, an SMTP relay); secrets encrypted at rest."""

    channel = models.CharField(max_length=16)
    provider = models.CharField(max_length=32)
    settings = models.JSONField(default=dict, blank=True)  # non-secret: base URL, sender number, instance URL...
    secrets_encrypted = models.TextField(blank=True)  # Fernet token of a JSON object (channels.credentials)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=now)
    updated_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "channel"], name="channel_account_one_per_channel")]


class OutboxMessage(models.Model):
    """A message kept instead of sent: the built-in outbox, shown in the dashboard.

    E-mail lands here when EMAIL_URL is unset (the demo), through the journey adapter or Django's mail
    (password resets...). In sandbox mode (TERTULIA_CHANNELS_SANDBOX) SMS and direct messages of stores
    without a provider account land here too. `raw` is what would have gone out: the whole MIME message
    for e-mail, the text the person would read for SMS and DMs.
    """

    store = models.ForeignKey("core.Store", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    delivery = models.ForeignKey(Delivery, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    channel = models.CharField(max_length=16, default="email")  # customers.Channel: email, sms, social_dm
    from_email = models.CharField(max_length=320)  # the sender: an address, a phone number or a handle
    to = models.JSONField(default=list)
    subject = models.CharField(max_length=998)
    body_text = models.TextField(blank=True)
    body_html = models.TextField(blank=True)
    headers = models.JSONField(default=dict, blank=True)
    raw = models.TextField()
    provider_message_id = models.CharField(max_length=200, blank=True)  # the e-mail's Message-ID, "outbox-<id>"...
    created_at = models.DateTimeField(default=now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["store", "channel", "-created_at"], name="outbox_by_store")]

    def __str__(self) -> str:
        return f"{self.channel}: {self.subject or self.body_text[:40]} -> {', '.join(self.to)}"


# The scaffold's name, kept so code written against it keeps working.
OutboxEmail = OutboxMessage
