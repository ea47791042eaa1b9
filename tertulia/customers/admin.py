"""Django admin for customers, their identities and the consent ledger (the ledger is read-only)."""

from django.contrib import admin

from tertulia.core.admin import ReadOnlyAdmin
from tertulia.customers.models import Consent, ConsentChange, Customer, Identity


class IdentityInline(admin.TabularInline):
    model = Identity
    extra = 0
    fields = ["kind", "value", "verified", "created_at"]
    readonly_fields = ["created_at"]


class ConsentInline(admin.TabularInline):
    model = Consent
    extra = 0
    fields = ["channel", "status", "changed_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["id", "first_name", "last_name", "language", "store", "created_at", "merged_into", "erased_at"]
    list_filter = ["store", "language", ("merged_into", admin.EmptyFieldListFilter),
                   ("erased_at", admin.EmptyFieldListFilter)]
    search_fields = ["first_name", "last_name", "external_id", "identities__value"]
    list_select_related = ["store"]
    readonly_fields = ["merged_into", "erased_at", "profile_updated_at", "created_at", "updated_at"]
    filter_horizontal = ["interests"]
    inlines = [IdentityInline, ConsentInline]


@admin.register(Identity)
class IdentityAdmin(admin.ModelAdmin):
    list_display = ["kind", "value", "customer", "verified", "store", "created_at"]
    list_filter = ["kind", "verified", "store"]
    search_fields = ["value"]
    list_select_related = ["customer", "store"]
    raw_id_fields = ["customer"]


@admin.register(ConsentChange)
class ConsentChangeAdmin(ReadOnlyAdmin):
    list_display = ["customer", "channel", "status", "source", "occurred_at", "recorded_at", "store"]
    list_filter = ["channel", "status", "source", "store"]
    search_fields = ["customer__identities__value", "source"]
    date_hierarchy = "occurred_at"
    list_select_related = ["customer", "store"]


@admin.register(Consent)
class ConsentAdmin(ReadOnlyAdmin):
    list_display = ["customer", "channel", "status", "changed_at", "store"]
    list_filter = ["channel", "status", "store"]
    search_fields = ["customer__identities__value"]
    list_select_related = ["customer", "store"]
