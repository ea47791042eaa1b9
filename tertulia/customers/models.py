"""One profile per person per store, their identities, and the consent ledger."""

from django.db import models
from django.utils.timezone import now

from tertulia.core.models import StoreScoped


class Customer(StoreScoped):
    external_id = models.CharField(max_length=128, blank=True, db_index=True)
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    language = models.CharField(max_length=8, blank=True)
    timezone = models.CharField(max_length=64, blank=True)
    interests = models.ManyToManyField("catalog.Category", blank=True, related_name="+")
    # When two profiles turn out to be one person, the newer one points at the survivor.
    merged_into = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    erased_at = models.DateTimeField(null=True, blank=True)
    # When the profile fields were last true at the source, so an older update never overwrites a newer one.
    profile_updated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=now)
    updated_at = models.DateTimeField(default=now)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["store", "created_at"], name="customer_store_created")]

    def __str__(self) -> str:
        return f"{self.first_name} {self.last_name}".strip() or f"customer {self.pk}"

    @property
    def display_name(self) -> str:
        return str(self)


class IdentityKind(models.TextChoices):
    EMAIL = "email", "E-mail"
    PHONE = "phone", "Phone"
    EXTERNAL = "external", "Store customer id"
    MASTODON = "mastodon", "Mastodon"
    BLUESKY = "bluesky", "Bluesky"
    X = "x", "X"
    INSTAGRAM = "instagram", "Instagram"
    FACEBOOK = "facebook", "Facebook"
    TIKTOK = "tiktok", "TikTok"


SOCIAL_KINDS = frozenset(
    {IdentityKind.MASTODON, IdentityKind.BLUESKY, IdentityKind.X, IdentityKind.INSTAGRAM,
     IdentityKind.FACEBOOK, IdentityKind.TIKTOK}
)


class Identity(StoreScoped):
    """A normalised way to reach or recognise a person: e-mail (lower-case), phone (E.164), handle."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="identities")
    kind = models.CharField(max_length=16, choices=IdentityKind.choices)
    value = models.CharField(max_length=320)
    verified = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=now)

    class Meta:
        verbose_name_plural = "identities"
        constraints = [models.UniqueConstraint(fields=["store", "kind", "value"], name="identity_unique_value")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


class Channel(models.TextChoices):
    EMAIL = "email", "E-mail"
    SMS = "sms", "SMS"
    SOCIAL_DM = "social_dm", "Social direct message"


class ConsentStatus(models.TextChoices):
    SUBSCRIBED = "subscribed", "Subscribed"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    PENDING = "pending_confirmation", "Pending confirmation"


class ConsentChange(StoreScoped):
    """The ledger: every consent change, never edited. The current state is derived from it."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="consent_changes")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    status = models.CharField(max_length=24, choices=ConsentStatus.choices)
    source = models.CharField(max_length=64)
    occurred_at = models.DateTimeField()
    recorded_at = models.DateTimeField(default=now)
    evidence = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["occurred_at", "id"]
        indexes = [models.Index(fields=["customer", "channel", "occurred_at"], name="consent_ledger_lookup")]


class Consent(StoreScoped):
    """Current consent per person and channel: a projection of the ledger, rebuilt by `consent_rebuild`."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="consents")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    status = models.CharField(max_length=24, choices=ConsentStatus.choices)
    changed_at = models.DateTimeField()
    change = models.ForeignKey(ConsentChange, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["customer", "channel"], name="consent_one_per_channel")]
        indexes = [models.Index(fields=["store", "channel", "status"], name="consent_rate")]
