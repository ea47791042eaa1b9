"""Django admin for moderation records: read-only history (decisions are made in the dashboard queue
and the policy changes through policy_update, which validates and versions it)."""

from django.contrib import admin

from tertulia.core.admin import ReadOnlyAdmin
from tertulia.moderation.models import Decision, Judgement, Policy, PolicyRevision, StoreClassifier


@admin.register(Policy)
class PolicyAdmin(ReadOnlyAdmin):
    list_display = ["store", "version", "premoderate", "window_days", "updated_at", "updated_by"]
    list_select_related = ["store"]


@admin.register(PolicyRevision)
class PolicyRevisionAdmin(ReadOnlyAdmin):
    list_display = ["store", "version", "changed_by", "created_at"]
    list_filter = ["store"]


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "store", "content_type", "content_id", "action", "top_code", "automatic",
                    "decided_by", "policy_version"]
    list_filter = ["action", "automatic", "top_code", "content_type", "store"]
    search_fields = ["decided_by", "note"]
    list_select_related = ["store"]
    date_hierarchy = "created_at"


@admin.register(Judgement)
class JudgementAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "store", "content_type", "content_id", "kind", "author_name", "action", "language"]
    list_filter = ["action", "kind", "language", "store"]
    search_fields = ["author_name", "text"]
    # Hashes of devices and IPs are not shown: they mean nothing to a person and invite guessing.
    exclude = ["device_hash", "ip_hash", "simhash", "band0", "band1", "band2", "band3"]
    list_select_related = ["store"]


@admin.register(StoreClassifier)
class StoreClassifierAdmin(ReadOnlyAdmin):
    list_display = ["store", "name", "version", "examples", "created_at"]
    list_filter = ["name", "store"]
    exclude = ["model"]
