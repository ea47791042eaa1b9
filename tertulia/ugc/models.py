"""Community content: reviews with photos, questions and answers, comments, testimonials, the forum,
helpful votes and flags, and the per-product summary whose version keys every cache of it.

Every kind of contribution shares one shape (`Contribution`): who wrote it (a display name, maybe a
customer, hashed network and device ids, an e-mail that is never shown), its language, and its
moderation status with the verdict that set it. Status is only changed by ugc.services.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.timezone import now

from tertulia.core.models import StoreScoped


class Status(models.TextChoices):
    PENDING = "pending", "Pending"  # being judged; never shown
    PUBLISHED = "published", "Published"
    HELD = "held", "Held for a moderator"
    REJECTED = "rejected", "Rejected"


class ContentType(models.TextChoices):
    REVIEW = "review", "Review"
    QUESTION = "question", "Question"
    ANSWER = "answer", "Answer"
    COMMENT = "comment", "Comment"
    TESTIMONIAL = "testimonial", "Testimonial"
    FORUM_THREAD = "forum_thread", "Forum thread"
    FORUM_POST = "forum_post", "Forum post"


class Contribution(StoreScoped):
    """What every piece of community content has: author, language, moderation state, counters."""

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    text = models.TextField()
    display_name = models.CharField(max_length=80, blank=True)
    anonymous = models.BooleanField(default=False)
    language = models.CharField(max_length=8, blank=True)
    customer = models.ForeignKey("customers.Customer", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    # Given by the author so we can tell them about decisions; never shown, never in an API answer.
    author_email = models.EmailField(max_length=254, blank=True)
    # Keyed hashes (ugc.identity): enough to count and to tell people apart, not to find them.
    ip_hash = models.CharField(max_length=64, blank=True)
    device_hash = models.CharField(max_length=64, blank=True)
    verified_buyer = models.BooleanField(default=False)
    helpful_count = models.PositiveIntegerField(default=0)
    flag_count = models.PositiveIntegerField(default=0)
    # Replays: the client's Idempotency-Key, and a hash of author + subject + text (see docs/ugc.md).
    client_key = models.CharField(max_length=64, blank=True)
    fingerprint = models.CharField(max_length=64, blank=True)
    # The latest verdict as the moderation app gave it: action, results [{code, score, evidence}], policy version.
    moderation = models.JSONField(default=dict, blank=True)
    decided_by = models.CharField(max_length=150, blank=True)  # "" = automatic; else a username
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=now)
    updated_at = models.DateTimeField(default=now)

    class Meta:
        abstract = True
        constraints = [
            models.UniqueConstraint(fields=["store", "client_key"], condition=~Q(client_key=""),
                                    name="%(app_label)s_%(class)s_client_key"),
        ]
        indexes = [
            models.Index(fields=["store", "status", "created_at"], name="%(app_label)s_%(class)s_queue"),
            models.Index(fields=["store", "fingerprint"], name="%(app_label)s_%(class)s_replay"),
        ]

    @property
    def author(self) -> str:
        return "" if self.anonymous else self.display_name


class Review(Contribution):
    product = models.ForeignKey("catalog.Product", on_delete=models.CASCADE, related_name="+")
    # Set when written through the review link of an order: one review per item per order.
    order = models.ForeignKey("commerce.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    rating = models.PositiveSmallIntegerField()
    title = models.CharField(max_length=200, blank=True)
    reply_text = models.TextField(blank=True)
    reply_at = models.DateTimeField(null=True, blank=True)
    reply_by = models.CharField(max_length=150, blank=True)

    class Meta(Contribution.Meta):
        constraints = [
            *Contribution.Meta.constraints,
            models.CheckConstraint(condition=Q(rating__gte=1, rating__lte=5), name="ugc_review_rating_1_5"),
            models.UniqueConstraint(fields=["order", "product"], condition=Q(order__isnull=False),
                                    name="ugc_review_one_per_order_item"),
        ]
        indexes = [
            *Contribution.Meta.indexes,
            models.Index(fields=["product", "status", "created_at"], name="ugc_review_product_newest"),
        ]

    def __str__(self) -> str:
        return f"review {self.pk} ({self.rating}/5)"


class ReviewPhoto(StoreScoped):
    """A photo as we re-encoded it (metadata stripped); the original upload is never kept."""

    review = models.ForeignKey(Review, on_delete=models.CASCADE, related_name="photos")
    key = models.CharField(max_length=32, unique=True)  # random; names the file and the public URL
    file = models.FileField(max_length=200)
    content_type = models.CharField(max_length=32)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    size_bytes = models.PositiveIntegerField()
    position = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=now)

    class Meta:
        ordering = ["review_id", "position", "id"]
        indexes = [models.Index(fields=["store", "review"], name="ugc_photo_review")]

    @property
    def extension(self) -> str:
        return "webp" if self.content_type == "image/webp" else "jpg"


class Question(Contribution):
    product = models.ForeignKey("catalog.Product", on_delete=models.CASCADE, related_name="+")
    # Staff may pin a question (and its best answer) into the product's FAQ whatever the votes say.
    pinned = models.BooleanField(default=False)
    buyers_invited_at = models.DateTimeField(null=True, blank=True)

    class Meta(Contribution.Meta):
        indexes = [
            *Contribution.Meta.indexes,
            models.Index(fields=["product", "status", "created_at"], name="ugc_question_product"),
        ]

    def __str__(self) -> str:
        return f"question {self.pk}"


class Answer(Contribution):
    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="answers")
    by_staff = models.BooleanField(default=False)
    staff_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta(Contribution.Meta):
        indexes = [
            *Contribution.Meta.indexes,
            models.Index(fields=["question", "status"], name="ugc_answer_question"),
        ]

    def __str__(self) -> str:
        return f"answer {self.pk}"


class Comment(Contribution):
    """A comment on a product; `parent` makes threads (a reply to a reply keeps its own parent)."""

    product = models.ForeignKey("catalog.Product", on_delete=models.CASCADE, related_name="+")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="replies")
    depth = models.PositiveSmallIntegerField(default=0)

    class Meta(Contribution.Meta):
        indexes = [
            *Contribution.Meta.indexes,
            models.Index(fields=["product", "status", "created_at"], name="ugc_comment_product"),
        ]


class Testimonial(Contribution):
    """What someone says about the store as a whole (pre-sale trust), optionally with a rating."""

    rating = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta(Contribution.Meta):
        constraints = [
            *Contribution.Meta.constraints,
            models.CheckConstraint(condition=Q(rating__isnull=True) | Q(rating__gte=1, rating__lte=5),
                                   name="ugc_testimonial_rating_1_5"),
        ]


class ForumThread(Contribution):
    """A support thread in the forum of one category; `text` is its opening post."""

    category = models.ForeignKey("catalog.Category", on_delete=models.CASCADE, related_name="+")
    title = models.CharField(max_length=150)
    post_count = models.PositiveIntegerField(default=0)  # published replies
    last_post_at = models.DateTimeField(default=now)

    class Meta(Contribution.Meta):
        indexes = [
            *Contribution.Meta.indexes,
            models.Index(fields=["category", "status", "last_post_at"], name="ugc_thread_category"),
        ]


class ForumPost(Contribution):
    thread = models.ForeignKey(ForumThread, on_delete=models.CASCADE, related_name="posts")
    reply_to = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta(Contribution.Meta):
        indexes = [
            *Contribution.Meta.indexes,
            models.Index(fields=["thread", "status", "created_at"], name="ugc_post_thread"),
        ]


class Vote(StoreScoped):
    """One helpful vote per voter (a device, or a customer) per item; the constraint is the rule."""

    content_type = models.CharField(max_length=16, choices=ContentType.choices)
    object_id = models.BigIntegerField()
    voter_hash = models.CharField(max_length=64)
    ip_hash = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "content_type", "object_id", "voter_hash"],
                                               name="ugc_vote_one_per_voter")]


class FlagReason(models.TextChoices):
    SPAM = "spam", "Spam or advertising"
    OFFENSIVE = "offensive", "Insulting or offensive"
    OFF_TOPIC = "off_topic", "Off topic"
    PERSONAL_DATA = "personal_data", "Personal data"
    FAKE = "fake", "Fake or misleading"
    OTHER = "other", "Other"


class Flag(StoreScoped):
    """A reader's report; one per reporter per item. Enough of them send a published item back to a person."""

    content_type = models.CharField(max_length=16, choices=ContentType.choices)
    object_id = models.BigIntegerField()
    reporter_hash = models.CharField(max_length=64)
    ip_hash = models.CharField(max_length=64, blank=True)
    reason = models.CharField(max_length=16, choices=FlagReason.choices)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "content_type", "object_id", "reporter_hash"],
                                               name="ugc_flag_one_per_reporter")]
        indexes = [models.Index(fields=["store", "content_type", "object_id"], name="ugc_flag_item")]


class ProductSummary(StoreScoped):
    """Published-review aggregate of a product, and the version every cached answer about it is keyed by.

    `version` goes up on every change to the product's community content (a submission, a decision,
    a vote, a reply), so a cache key or ETag built from it is never stale, in any process.
    """

    product = models.OneToOneField("catalog.Product", on_delete=models.CASCADE, related_name="ugc_summary")
    version = models.BigIntegerField(default=1)
    review_count = models.PositiveIntegerField(default=0)
    rating_sum = models.PositiveIntegerField(default=0)
    histogram = models.JSONField(default=dict)  # {"1": n, ..., "5": n}
    updated_at = models.DateTimeField(default=now)

    class Meta:
        verbose_name_plural = "product summaries"
        constraints = [models.UniqueConstraint(fields=["store", "product"], name="ugc_summary_one_per_product")]

    @property
    def average(self) -> float | None:
        return round(self.rating_sum / self.review_count, 1) if self.review_count else None


class StoreOrigin(StoreScoped):
    """A web origin (scheme://host[:port]) allowed to call the public API from a browser, beside Store.website_url."""

    origin = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "origin"], name="ugc_origin_unique")]

    def __str__(self) -> str:
        return self.origin
