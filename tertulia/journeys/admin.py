"""Django admin for journeys (superusers only): definitions and their history, enrollments, codes, attribution.

Journeys are edited through `journey_update` (API and dashboard) so every change is validated and
versioned; here they can be switched on and off, and everything else is read-only.
"""

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from tertulia.core.admin import ReadOnlyAdmin
from tertulia.core.errors import ApiError
from tertulia.journeys.definitions import journey_update
from tertulia.journeys.models import (
    Attribution,
    DiscountCode,
    Enrollment,
    Journey,
    JourneyRevision,
    Referral,
    ReferralCode,
)


class JourneyRevisionInline(admin.TabularInline):
    model = JourneyRevision
    extra = 0
    fields = ["version", "enabled", "changed_by", "created_at"]
    readonly_fields = fields
    ordering = ["-version"]
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Journey)
class JourneyAdmin(ReadOnlyAdmin):
    list_display = ["key", "store", "enabled", "version", "updated_at"]
    list_filter = ["key", "enabled", "store"]
    search_fields = ["key", "store__slug"]
    list_select_related = ["store"]
    readonly_fields = ["store", "key", "enabled", "version", "definition", "created_at", "updated_at"]
    inlines = [JourneyRevisionInline]
    actions = ["switch_on", "switch_off"]

    def has_change_permission(self, request, obj=None):
        return obj is None  # the list (and its actions); the form stays read-only

    def _switch(self, request, queryset, enabled: bool) -> None:
        changed = 0
        for journey in queryset.select_related("store"):
            try:
                journey_update(store=journey.store, key=journey.key, changes={"enabled": enabled},
                               changed_by=request.user.get_username())
                changed += 1
            except ApiError as error:
                self.message_user(request, f"{journey}: {error}", messages.ERROR)
        self.message_user(request, _("%(count)d journeys changed.") % {"count": changed})

    @admin.action(description=_("Switch on"))
    def switch_on(self, request, queryset):
        self._switch(request, queryset, True)

    @admin.action(description=_("Switch off"))
    def switch_off(self, request, queryset):
        self._switch(request, queryset, False)


@admin.register(JourneyRevision)
class JourneyRevisionAdmin(ReadOnlyAdmin):
    list_display = ["journey", "version", "enabled", "changed_by", "created_at"]
    list_filter = ["journey__key", "store"]
    list_select_related = ["journey"]


@admin.register(Enrollment)
class EnrollmentAdmin(ReadOnlyAdmin):
    list_display = ["id", "journey_key", "customer", "trigger_type", "trigger_id", "status", "exit_reason",
                    "variant", "holdout", "enrolled_at", "store"]
    list_filter = ["journey_key", "status", "holdout", "exit_reason", "store"]
    search_fields = ["trigger_id", "customer__identities__value"]
    date_hierarchy = "enrolled_at"
    list_select_related = ["customer", "store"]
    raw_id_fields = ["customer", "converted_order"]


@admin.register(DiscountCode)
class DiscountCodeAdmin(ReadOnlyAdmin):
    list_display = ["code", "kind", "percent", "customer", "expires_at", "used_at", "order", "store"]
    list_filter = ["kind", "store", ("used_at", admin.EmptyFieldListFilter)]
    search_fields = ["code"]
    list_select_related = ["customer", "order", "store"]


@admin.register(ReferralCode)
class ReferralCodeAdmin(ReadOnlyAdmin):
    list_display = ["code", "customer", "created_at", "store"]
    search_fields = ["code"]
    list_select_related = ["customer", "store"]


@admin.register(Referral)
class ReferralAdmin(ReadOnlyAdmin):
    list_display = ["referrer", "referred", "order", "reward", "created_at", "store"]
    list_select_related = ["referrer", "referred", "order", "reward", "store"]


@admin.register(Attribution)
class AttributionAdmin(ReadOnlyAdmin):
    list_display = ["order", "journey_key", "step_key", "channel", "variant", "basis", "revenue", "currency",
                    "placed_at", "store"]
    list_filter = ["journey_key", "basis", "channel", "store"]
    list_select_related = ["order", "store"]
