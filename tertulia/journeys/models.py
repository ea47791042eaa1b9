"""Journeys: who gets which message when, and what it brought (docs/journeys.md).

A Journey is a store's editable definition (trigger, steps, holdout, variants) kept as validated
JSON with a version. An Enrollment is one person taken into one journey by one trigger (a cart, an
order, a review, a subscription, a mention heard on social media); its steps are channels.Delivery rows that wait for their due_at.
"""

from django.db import models
from django.utils.timezone import now

from tertulia.core.models import StoreScoped


class JourneyKey(models.TextChoices):
    ABANDONED_CART = "abandoned_cart", "Abandoned cart"
    THANK_YOU = "thank_you", "Thank you"
    REVIEW_REQUEST = "review_request", "Review request"
    REFERRAL_REQUEST = "referral_request", "Referral request"
    WELCOME = "welcome", "Welcome"
    WINBACK = "winback", "Win-back"
    PURCHASE_INTENT = "purchase_intent", "Purchase intent on social media"


class Journey(StoreScoped):
    key = models.CharField(max_length=32, choices=JourneyKey.choices)
    enabled = models.BooleanField(default=True)
    # trigger, steps, holdout_share, variants, attribution: shape and rules in journeys.definitions.
    definition = models.JSONField(default=dict)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=now)
    updated_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "key"], name="journey_one_per_key")]

    def __str__(self) -> str:
        return f"{self.store_id}:{self.key} v{self.version}"


class JourneyRevision(StoreScoped):
    """Every accepted version of a journey, with who made it: the edit history and what old deliveries used."""

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="revisions")
    version = models.PositiveIntegerField()
    enabled = models.BooleanField()
    definition = models.JSONField()
    changed_by = models.CharField(max_length=150, blank=True)  # a username, "api-key:<prefix>", or "system"
    created_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["journey", "version"], name="journey_revision_unique")]


class TriggerType(models.TextChoices):
    CART = "cart", "Cart"
    ORDER = "order", "Order"
    REVIEW = "review", "Review"
    SUBSCRIPTION = "subscription", "Subscription"
    MENTION = "mention", "Mention"  # a listening.Mention: trigger_id is its id


class EnrollmentStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    COMPLETED = "completed", "Completed"  # every step ran
    EXITED = "exited", "Exited"  # an exit condition ended it; exit_reason says which
    HOLDOUT = "holdout", "Holdout"  # kept out on purpose to measure uplift; nothing is sent


class Enrollment(StoreScoped):
    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="enrollments")
    journey_key = models.CharField(max_length=32)
    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="enrollments")
    trigger_type = models.CharField(max_length=16, choices=TriggerType.choices)
    trigger_id = models.CharField(max_length=128)  # the cart's, order's or review's external id, the mention's id
    trigger_at = models.DateTimeField()  # the moment step delays count from (last cart activity, delivery...)
    journey_version = models.PositiveIntegerField()
    variant = models.CharField(max_length=32, blank=True)
    holdout = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=EnrollmentStatus.choices, default=EnrollmentStatus.ACTIVE)
    exit_reason = models.CharField(max_length=32, blank=True)
    answer = models.CharField(max_length=64, blank=True)  # the one-click answer ("price", "shipping"...)
    context = models.JSONField(default=dict, blank=True)  # snapshot for the messages: items, totals, links
    # Conversion: the first order the person placed within the attribution window after enrolling.
    converted_order = models.ForeignKey("commerce.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    converted_at = models.DateTimeField(null=True, blank=True)
    enrolled_at = models.DateTimeField(default=now)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["journey", "customer", "trigger_type", "trigger_id"], name="enrollment_once_per_trigger"
            ),
        ]
        indexes = [
            models.Index(fields=["store", "journey_key", "enrolled_at"], name="enrollment_by_journey"),
            models.Index(fields=["store", "customer", "status"], name="enrollment_by_person"),
            # A cart, order or review enrolls once, whoever it belongs to by now (journeys.triggers).
            models.Index(fields=["journey", "trigger_type", "trigger_id"], name="enrollment_by_trigger"),
        ]


class DiscountKind(models.TextChoices):
    RECOVERY = "recovery", "Cart recovery"
    REFERRAL = "referral", "Referral (for the friend)"
    REFERRAL_REWARD = "referral_reward", "Referral reward (for the referrer)"


class DiscountCode(StoreScoped):
    """A unique, single-use code the store honours at checkout; using it shows up as an order's discount code."""

    code = models.CharField(max_length=32)
    kind = models.CharField(max_length=16, choices=DiscountKind.choices)
    percent = models.PositiveSmallIntegerField()
    customer = models.ForeignKey("customers.Customer", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    enrollment = models.ForeignKey(Enrollment, null=True, blank=True, on_delete=models.SET_NULL, related_name="discount_codes")
    expires_at = models.DateTimeField(null=True, blank=True)
    used_at = models.DateTimeField(null=True, blank=True)
    order = models.ForeignKey("commerce.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "code"], name="discount_code_unique")]


class ReferralCode(StoreScoped):
    """A customer's personal referral code; an order that uses it (or its link) is attributed to them."""

    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="+")
    code = models.CharField(max_length=32)
    created_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["store", "code"], name="referral_code_unique"),
            models.UniqueConstraint(fields=["store", "customer"], name="referral_code_one_per_customer"),
        ]


class Referral(StoreScoped):
    referrer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="+")
    order = models.OneToOneField("commerce.Order", on_delete=models.CASCADE, related_name="+")
    referred = models.ForeignKey("customers.Customer", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reward = models.ForeignKey(DiscountCode, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=now)


class AttributionBasis(models.TextChoices):
    CLICK = "click", "Click"
    OPEN = "open", "Open"
    DISCOUNT_CODE = "discount_code", "Discount code"
    REFERRAL = "referral", "Referral"


class Attribution(StoreScoped):
    """An order credited to the message that brought it (one message per order: the last touch)."""

    order = models.OneToOneField("commerce.Order", on_delete=models.CASCADE, related_name="+")
    delivery = models.ForeignKey("channels.Delivery", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    enrollment = models.ForeignKey(Enrollment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    journey_key = models.CharField(max_length=32)
    step_key = models.CharField(max_length=32, blank=True)
    channel = models.CharField(max_length=16, blank=True)
    variant = models.CharField(max_length=32, blank=True)
    basis = models.CharField(max_length=16, choices=AttributionBasis.choices)
    revenue = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, blank=True)
    placed_at = models.DateTimeField()
    created_at = models.DateTimeField(default=now)

    class Meta:
        indexes = [models.Index(fields=["store", "journey_key", "placed_at"], name="attribution_by_journey")]
