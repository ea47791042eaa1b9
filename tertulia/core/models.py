"""Stores (the tenant), staff memberships and roles, API keys, and the durable job queue."""

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils.timezone import now


class Store(models.Model):
    """The tenant: every domain record belongs to exactly one store."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    currency = models.CharField(max_length=3, default="EUR")
    language = models.CharField(max_length=8, default="es")
    timezone = models.CharField(max_length=64, default="Europe/Madrid")
    website_url = models.URLField(blank=True)
    shopify_secret = models.CharField(max_length=128, blank=True)
    woocommerce_secret = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(default=now)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class StoreScopedQuerySet(models.QuerySet):
    def for_store(self, store: "Store | int") -> "StoreScopedQuerySet":
        store_id = store if isinstance(store, int) else store.pk
        return self.filter(store_id=store_id)


class StoreScopedManager(models.Manager.from_queryset(StoreScopedQuerySet)):  # type: ignore[misc]
    """The one place scoping happens: selectors and services start from `Model.objects.for_store(store)`."""


class StoreScoped(models.Model):
    # No single-column index: every scoped table has a composite index or unique constraint that
    # starts with store_id, and one index fewer per row matters on the ingestion path.
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="+", db_index=False)

    objects = StoreScopedManager()

    class Meta:
        abstract = True


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    MANAGER = "manager", "Manager"
    COMMUNITY_MANAGER = "community_manager", "Community manager"
    AGENT = "agent", "Agent"
    MODERATOR = "moderator", "Moderator"
    ANALYST = "analyst", "Analyst"


class Membership(StoreScoped):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=32, choices=Role.choices)
    created_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "user"], name="membership_one_per_store")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.store_id} ({self.role})"


class ApiKeyScope(models.TextChoices):
    READ = "read", "Read"
    READ_WRITE = "read_write", "Read and write"


class ApiKey(StoreScoped):
    """A store's API key. The secret is shown once; only its SHA-256 is kept."""

    PREFIX = "tk_"

    name = models.CharField(max_length=100)
    lookup = models.CharField(max_length=16, unique=True, help_text="Public first characters, to find the row.")
    hashed = models.CharField(max_length=64)
    scope = models.CharField(max_length=16, choices=ApiKeyScope.choices, default=ApiKeyScope.READ_WRITE)
    created_at = models.DateTimeField(default=now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.PREFIX}{self.lookup}…)"

    @staticmethod
    def hash_secret(secret: str) -> str:
        # Keys are 256-bit random tokens, so a fast hash is enough: there is nothing to brute-force.
        return hashlib.sha256(secret.encode()).hexdigest()

    @classmethod
    def new_secret(cls) -> tuple[str, str]:
        lookup = secrets.token_hex(6)
        return lookup, f"{cls.PREFIX}{lookup}_{secrets.token_urlsafe(32)}"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Job(models.Model):
    """Work that waits: a row with `due_at` and a status, claimed by a worker under a lease.

    See docs/worker.md. Store is optional because some work (housekeeping) spans stores.
    """

    store = models.ForeignKey(Store, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    task_path = models.CharField(max_length=200)
    queue_name = models.CharField(max_length=64, default="default")
    priority = models.IntegerField(default=0)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    unique_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    due_at = models.DateTimeField(default=now)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=5)
    claimed_by = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_class = models.CharField(max_length=200, blank=True)
    return_value = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "due_at"], name="job_claimable"),
            models.Index(fields=["status", "lease_expires_at"], name="job_leases"),
        ]

    def __str__(self) -> str:
        return f"{self.task_path} #{self.pk} ({self.status})"
