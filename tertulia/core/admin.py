"""Django admin for stores, memberships, API keys and jobs (superusers only; the dashboard is for staff)."""

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from tertulia.core.models import ApiKey, Job, Membership, Store
from tertulia.core.services import api_key_create, api_key_revoke


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]



class ReadOnlyAdmin(admin.ModelAdmin):
    """For records that are history or derived state (event log, consent ledger): viewable, never written by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "currency", "language", "timezone", "created_at"]
    list_filter = ["currency", "language"]
    search_fields = ["slug", "name", "website_url"]
    readonly_fields = ["created_at"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "store", "role", "created_at"]
    list_filter = ["role", "store"]
    search_fields = ["user__username", "user__email", "store__slug", "store__name"]
    autocomplete_fields = ["user"]
    list_select_related = ["user", "store"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are made through `api_key_create`; the secret is shown once and the hash is never displayed."""

    list_display = ["name", "store", "prefix", "scope", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["scope", "store", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "lookup", "store__slug"]
    list_select_related = ["store"]
    actions = ["revoke"]
    # `hashed` is left out entirely: not editable, not even readable.
    fields = ["store", "name", "scope", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]

    @admin.display(description=_("Key starts with"))
    def prefix(self, key: ApiKey) -> str:
        return f"{ApiKey.PREFIX}{key.lookup}…" if key.lookup else "—"

    def get_readonly_fields(self, request, obj=None):
        # Moving a key to another store would hand that store's data to whoever holds it.
        return [*self.readonly_fields, "store"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = api_key_create(store=obj.store, name=obj.name, scope=obj.scope)
        for field in ("pk", "lookup", "hashed", "created_at"):
            setattr(obj, field, getattr(issued.key, field))
        messages.warning(
            request, _("Copy this key now, it will not be shown again: %(secret)s") % {"secret": issued.secret}
        )

    @admin.action(description=_("Revoke the selected keys"))
    def revoke(self, request, queryset):
        for key in queryset.select_related("store"):
            api_key_revoke(store=key.store, key_id=key.pk)
        messages.success(request, _("Keys revoked."))


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "task_path", "queue_name", "status", "due_at", "attempts", "store", "finished_at"]
    list_filter = ["status", "queue_name"]
    search_fields = ["task_path", "unique_key", "claimed_by", "last_error"]
    date_hierarchy = "due_at"
    list_select_related = ["store"]
    # The worker owns a job's state; editing it by hand would fight the lease.
    readonly_fields = [field.name for field in Job._meta.fields]

    def has_add_permission(self, request):
        return False


admin.site.site_header = "Tertulia"
admin.site.site_title = "Tertulia"
