"""Moderation records: each store's policy (versioned), the audit of every decision, what was judged
(the history repetition and identity checks read), and per-store classifiers trained from moderators'
decisions.

Raw device ids and IP addresses are never stored: only keyed hashes (see services.identifier_hash).
"""

from django.conf import settings
from django.db import models
from django.utils.timezone import now

from tertulia.core.models import StoreScoped


class Action(models.TextChoices):
    PUBLISH = "publish", "Publish"
    HOLD = "hold", "Hold for a person"
    REJECT = "reject", "Reject"


class Policy(StoreScoped):
    """A store's comment policy as numbers: thresholds per reason code, names to protect, checks on.

    Edited only through services.policy_update, which validates, bumps `version` and keeps a
    PolicyRevision, so every Decision can say which policy it applied.
    """

    version = models.PositiveIntegerField(default=1)
    # {"default": {"hold": 0.5, "reject": 0.9}, "<code>": {"hold": .., "reject": ..}}; see policy.py
    thresholds = models.JSONField(default=dict)
    enabled_checks = models.JSONField(default=list)  # reason codes; [] is read as "all"
    staff_names = models.JSONField(default=list)
    brand_terms = models.JSONField(default=list)
    allowed_domains = models.JSONField(default=list)  # links and e-mails on these domains are not promotion
    premoderate = models.BooleanField(default=False)  # hold everything that would publish: a person reads all
    window_days = models.PositiveIntegerField(default=30)  # how far back repetition and identities look
    updated_at = models.DateTimeField(default=now)
    updated_by = models.CharField(max_length=150, blank=True)

    class Meta:
        verbose_name_plural = "policies"
        constraints = [models.UniqueConstraint(fields=["store"], name="moderation_policy_one_per_store")]

    def __str__(self) -> str:
        return f"{self.store_id} v{self.version}"


class PolicyRevision(StoreScoped):
    """Every version a store's policy has had, with who made it."""

    version = models.PositiveIntegerField()
    data = models.JSONField()
    changed_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "version"], name="moderation_policy_revision_unique")]


class Decision(StoreScoped):
    """One decision on one piece of content, automatic or by a person. Never edited; the latest wins."""

    content_type = models.CharField(max_length=32)  # review, question, answer, comment, testimonial, forum_post
    content_id = models.BigIntegerField(null=True, blank=True)
    action = models.CharField(max_length=16, choices=Action.choices)
    automatic = models.BooleanField()
    decided_by = models.CharField(max_length=150)  # "system", or the person's username
    decided_by_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+")
    policy_version = models.PositiveIntegerField()
    results = models.JSONField(default=list)  # [{"code", "score", "evidence"}]
    top_code = models.CharField(max_length=32, blank=True)  # strongest reason at or above hold, for filters
    note = models.TextField(blank=True)
    judgement = models.ForeignKey("Judgement", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=now)

    class Meta:
        indexes = [
            models.Index(fields=["store", "content_type", "content_id", "created_at"], name="moderation_decision_content"),
            models.Index(fields=["store", "created_at"], name="moderation_decision_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.content_type}:{self.content_id} {self.action} by {self.decided_by}"


class Judgement(StoreScoped):
    """What moderation was shown and concluded, kept so later checks can see history without ugc.

    The text is kept (up to 4,000 characters) for near-duplicate checks and for retraining the
    store's classifiers from its moderators' decisions; it is erased with the author's data.
    """

    content_type = models.CharField(max_length=32)
    content_id = models.BigIntegerField(null=True, blank=True)
    kind = models.CharField(max_length=32)
    text = models.TextField()
    language = models.CharField(max_length=8, blank=True)
    author_name = models.CharField(max_length=150, blank=True)
    author_key = models.CharField(max_length=150, blank=True)  # skeleton of the display name
    customer_id = models.BigIntegerField(null=True, blank=True)
    device_hash = models.CharField(max_length=32, blank=True)
    ip_hash = models.CharField(max_length=32, blank=True)
    subject_key = models.CharField(max_length=200, blank=True)
    text_hash = models.CharField(max_length=20)
    simhash = models.BigIntegerField(default=0)
    band0 = models.IntegerField(default=0)
    band1 = models.IntegerField(default=0)
    band2 = models.IntegerField(default=0)
    band3 = models.IntegerField(default=0)
    style = models.JSONField(default=list)
    action = models.CharField(max_length=16, choices=Action.choices)
    results = models.JSONField(default=list)
    policy_version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=now)

    class Meta:
        indexes = [
            models.Index(fields=["store", "device_hash", "created_at"], name="moderation_judg_device"),
            models.Index(fields=["store", "ip_hash", "created_at"], name="moderation_judg_ip"),
            models.Index(fields=["store", "customer_id", "created_at"], name="moderation_judg_customer"),
            models.Index(fields=["store", "author_key", "created_at"], name="moderation_judg_author"),
            models.Index(fields=["store", "content_type", "content_id"], name="moderation_judg_content"),
            models.Index(fields=["store", "text_hash"], name="moderation_judg_texthash"),
            models.Index(fields=["store", "band0"], name="moderation_judg_band0"),
            models.Index(fields=["store", "band1"], name="moderation_judg_band1"),
            models.Index(fields=["store", "band2"], name="moderation_judg_band2"),
            models.Index(fields=["store", "band3"], name="moderation_judg_band3"),
            models.Index(fields=["store", "created_at"], name="moderation_judg_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.content_type}:{self.content_id} {self.action}"


class StoreClassifier(StoreScoped):
    """A classifier retrained for one store (`tertulia moderation train --store`); the newest is used."""

    name = models.CharField(max_length=32)  # "spam" or "toxicity"
    version = models.PositiveIntegerField()
    model = models.BinaryField()  # classifier.Classifier.to_json(), zlib-compressed
    examples = models.PositiveIntegerField(default=0)  # of which from the store's own decisions: in info
    info = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "name", "version"], name="moderation_classifier_version")]

    def __str__(self) -> str:
        return f"{self.store_id}:{self.name} v{self.version}"
