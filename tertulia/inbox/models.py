"""The team inbox: every conversation with the store in one place, answered by many people as one team.

A Conversation is one thread with one person: a social post or mention and its replies, a run of direct
messages, a question from the widget, a review, an e-mail thread. Its Messages are what they wrote
(inbound), what the team answered (outbound, each sent as a channels.Delivery) and private notes. Teams,
assignment, SLA targets in business hours and canned replies are per store (docs/inbox.md).
"""

from django.conf import settings
from django.db import models
from django.utils.timezone import now

from tertulia.core.models import StoreScoped


def default_business_hours() -> dict:
    week = {day: [["09:00", "18:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
    return {**week, "sat": [], "sun": []}


def default_first_response_minutes() -> dict:
    return {"urgent": 30, "high": 60, "normal": 240, "low": 480}


def default_resolution_minutes() -> dict:
    return {"urgent": 240, "high": 480, "normal": 1440, "low": 2880}


class Team(StoreScoped):
    name = models.CharField(max_length=100)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="TeamMember", related_name="+")
    # Round-robin: new conversations routed to the team go to the next available member under the cap.
    auto_assign = models.BooleanField(default=True)
    max_open_per_agent = models.PositiveIntegerField(default=10)
    last_assigned = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+")
    created_at = models.DateTimeField(default=now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["store", "name"], name="team_unique_name")]

    def __str__(self) -> str:
        return self.name


class TeamMember(StoreScoped):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    available = models.BooleanField(default=True)  # off: skipped by auto-assignment (holidays, off shift)
    created_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="teammember_once")]


class InboxSettings(StoreScoped):
    """A store's inbox rules; a store without a row gets the defaults (selectors.inbox_settings_for)."""

    business_hours = models.JSONField(default=default_business_hours)  # {"mon": [["09:00", "18:00"]], ...}
    holidays = models.JSONField(default=list, blank=True)  # ["2026-12-25", ...] in the store's calendar
    first_response_minutes = models.JSONField(default=default_first_response_minutes)  # per priority
    resolution_minutes = models.JSONField(default=default_resolution_minutes)  # per priority
    # Which team gets each kind of conversation ({"question": team id, ...}); others go to default_team.
    routing = models.JSONField(default=dict, blank=True)
    default_team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Which heard posts open a conversation: "actionable" (questions, complaints, purchase intent, negative
    # posts, and everything addressed to the store), "all", or "addressed" (only mentions and messages).
    posts_to_inbox = models.CharField(max_length=16, default="actionable")
    # Which reviews open a conversation: "negative" (3 stars or fewer), "all" or "none".
    reviews_to_inbox = models.CharField(max_length=16, default="negative")
    updated_at = models.DateTimeField(default=now)

    class Meta:
        verbose_name_plural = "inbox settings"
        constraints = [models.UniqueConstraint(fields=["store"], name="inboxsettings_one_per_store")]


class ConversationKind(models.TextChoices):
    MENTION = "mention", "Mention"  # a public post that names the store or addresses it
    DIRECT = "direct", "Direct message"
    QUESTION = "question", "Product question"  # from the widget (ugc)
    REVIEW = "review", "Review"  # a review to answer (ugc)
    EMAIL = "email", "E-mail"


class ConversationStatus(models.TextChoices):
    OPEN = "open", "Open"  # waiting for the team
    PENDING = "pending", "Pending"  # answered, waiting for the person
    SNOOZED = "snoozed", "Snoozed"  # out of sight until snoozed_until (or a new message)
    RESOLVED = "resolved", "Resolved"


class Priority(models.TextChoices):
    URGENT = "urgent", "Urgent"
    HIGH = "high", "High"
    NORMAL = "normal", "Normal"
    LOW = "low", "Low"


class Conversation(StoreScoped):
    kind = models.CharField(max_length=16, choices=ConversationKind.choices)
    network = models.CharField(max_length=16)  # mastodon, bluesky, x, rss, webhook, email, widget, reviews
    # One conversation per thread: "mastodon:<root status id>", "email:<root Message-ID>", "question:<id>"...
    thread_key = models.CharField(max_length=450)
    subject = models.CharField(max_length=300, blank=True)
    customer = models.ForeignKey("customers.Customer", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="conversations")
    contact_handle = models.CharField(max_length=320, blank=True)  # @user@instance, an address...
    contact_name = models.CharField(max_length=200, blank=True)
    language = models.CharField(max_length=8, blank=True)
    status = models.CharField(max_length=16, choices=ConversationStatus.choices, default=ConversationStatus.OPEN)
    snoozed_until = models.DateTimeField(null=True, blank=True)
    priority = models.CharField(max_length=8, choices=Priority.choices, default=Priority.NORMAL)
    priority_score = models.PositiveSmallIntegerField(default=0)  # 0-100, from intent, sentiment and reach
    sentiment = models.CharField(max_length=8, blank=True)  # of the latest message they wrote
    intent = models.CharField(max_length=16, blank=True)
    reach = models.PositiveIntegerField(null=True, blank=True)  # followers of the person, when known
    # Where replies go out: the listening source (account) it was heard through.
    source = models.ForeignKey("listening.Source", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    question = models.ForeignKey("ugc.Question", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    review = models.ForeignKey("ugc.Review", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    assignee = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations")
    assigned_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=now)
    updated_at = models.DateTimeField(default=now)
    last_message_at = models.DateTimeField(default=now)
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    last_outbound_at = models.DateTimeField(null=True, blank=True)
    message_count = models.PositiveIntegerField(default=0)
    # SLA: targets in business hours (InboxSettings), and what was measured (business seconds).
    first_response_due_at = models.DateTimeField(null=True, blank=True)
    resolution_due_at = models.DateTimeField(null=True, blank=True)
    first_response_at = models.DateTimeField(null=True, blank=True)
    first_responder = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+")
    first_response_seconds = models.PositiveIntegerField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    resolution_seconds = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "thread_key"], name="conversation_one_per_thread")]
        indexes = [
            models.Index(fields=["store", "status", "last_message_at"], name="conversation_by_status"),
            models.Index(fields=["store", "assignee", "status"], name="conversation_by_assignee"),
            models.Index(fields=["store", "team", "status"], name="conversation_by_team"),
            models.Index(fields=["store", "first_response_due_at"], name="conversation_first_due"),
            models.Index(fields=["store", "resolution_due_at"], name="conversation_resolution_due"),
            models.Index(fields=["status", "snoozed_until"], name="conversation_snoozed"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.thread_key} ({self.status})"


class MessageDirection(models.TextChoices):
    INBOUND = "inbound", "From the person"
    OUTBOUND = "outbound", "From the team"
    NOTE = "note", "Private note"


class Message(StoreScoped):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    direction = models.CharField(max_length=16, choices=MessageDirection.choices)
    # Inbound: the platform's id of what they wrote (a status id, a Message-ID). Outbound: the provider's
    # id once sent (copied from the delivery), so an answer to our reply finds its conversation.
    external_id = models.CharField(max_length=450, blank=True)
    author_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    author_name = models.CharField(max_length=200, blank=True)
    text = models.TextField()
    mention = models.ForeignKey("listening.Mention", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    delivery = models.ForeignKey("channels.Delivery", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    mentioned_users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    canned_reply = models.ForeignKey("CannedReply", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "direction", "external_id"],
                                    condition=~models.Q(external_id=""), name="message_once"),
        ]
        indexes = [models.Index(fields=["store", "external_id"], name="message_by_external_id")]


class ConversationEvent(StoreScoped):
    """The conversation's history beside its messages: assigned, status changed, priority changed."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=32)  # created, assigned, unassigned, status, priority, reopened, sla_breached
    actor = models.CharField(max_length=150, blank=True)  # a username, "api-key:<prefix>", or "" for the system
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=now)

    class Meta:
        ordering = ["created_at", "id"]


class CannedReply(StoreScoped):
    """A saved answer in both languages; {{ variables }} are filled in for the conversation (inbox.canned)."""

    shortcut = models.SlugField(max_length=40)
    title = models.CharField(max_length=100)
    body_es = models.TextField()
    body_en = models.TextField()
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=now)
    updated_at = models.DateTimeField(default=now)

    class Meta:
        ordering = ["shortcut"]
        verbose_name_plural = "canned replies"
        constraints = [models.UniqueConstraint(fields=["store", "shortcut"], name="cannedreply_unique_shortcut")]

    def __str__(self) -> str:
        return self.shortcut


class Presence(StoreScoped):
    """Who has a conversation open right now (a heartbeat from the page), so two agents are warned."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    seen_at = models.DateTimeField(default=now)
    composing = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["conversation", "user"], name="presence_once")]


class AgentNotification(StoreScoped):
    """Something for one member of the team: a note that mentions them, a conversation assigned to them."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16)  # mentioned, assigned
    created_at = models.DateTimeField(default=now)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["store", "user", "read_at"], name="notification_unread")]
