"""Django admin for community content (superusers; staff use the dashboard's moderation queue).

Status changes and store replies go through ugc.services, so they are audited and caches follow.
"""

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from tertulia.core.admin import ReadOnlyAdmin
from tertulia.ugc import services
from tertulia.ugc.models import (
    Answer,
    Comment,
    Flag,
    ForumPost,
    ForumThread,
    ProductSummary,
    Question,
    Review,
    ReviewPhoto,
    StoreOrigin,
    Testimonial,
    Vote,
)


class ContributionAdmin(admin.ModelAdmin):
    content_type = ""
    list_display = ["id", "store", "status", "short_text", "display_name", "verified_buyer", "helpful_count",
                    "flag_count", "created_at"]
    list_filter = ["status", "store", "verified_buyer", "language"]
    search_fields = ["text", "display_name"]
    list_select_related = ["store"]
    readonly_fields = ["status", "moderation", "decided_by", "decided_at", "ip_hash", "device_hash", "fingerprint",
                       "client_key", "helpful_count", "flag_count", "created_at", "updated_at", "customer"]
    exclude = ["author_email"]  # never shown, even here
    actions = ["approve", "reject"]

    @admin.display(description=_("text"))
    def short_text(self, obj) -> str:
        return obj.text[:80]

    def has_add_permission(self, request):
        return False  # content comes from its authors, through the services

    def _decide(self, request, queryset, action: str) -> None:
        changed = 0
        for store_id in set(queryset.values_list("store_id", flat=True)):
            store = queryset.filter(store_id=store_id).first().store
            ids = list(queryset.filter(store_id=store_id).values_list("pk", flat=True))
            changed += services.content_decide(store=store, content_type=self.content_type, ids=ids, action=action,
                                               user=request.user, note="admin")
        self.message_user(request, _("%(n)d changed.") % {"n": changed}, messages.SUCCESS)

    @admin.action(description=_("Approve (publish)"))
    def approve(self, request, queryset):
        self._decide(request, queryset, "approve")

    @admin.action(description=_("Reject"))
    def reject(self, request, queryset):
        self._decide(request, queryset, "reject")


class ReviewPhotoInline(admin.TabularInline):
    model = ReviewPhoto
    extra = 0
    can_delete = False
    fields = ["key", "content_type", "width", "height", "size_bytes"]
    readonly_fields = fields


@admin.register(Review)
class ReviewAdmin(ContributionAdmin):
    content_type = "review"
    list_display = ["id", "store", "product", "rating", "status", "short_text", "display_name", "verified_buyer",
                    "helpful_count", "flag_count", "created_at"]
    list_select_related = ["store", "product"]
    readonly_fields = [*ContributionAdmin.readonly_fields, "product", "order", "rating", "title", "text",
                       "reply_at", "reply_by"]
    inlines = [ReviewPhotoInline]

    def save_model(self, request, obj, form, change):
        # Only the store's reply is editable here, and it goes through the service.
        if "reply_text" in form.changed_data:
            services.store_reply(store=obj.store, review_id=obj.pk, text=obj.reply_text, user=request.user)


@admin.register(Question)
class QuestionAdmin(ContributionAdmin):
    content_type = "question"


@admin.register(Answer)
class AnswerAdmin(ContributionAdmin):
    content_type = "answer"


@admin.register(Comment)
class CommentAdmin(ContributionAdmin):
    content_type = "comment"


@admin.register(Testimonial)
class TestimonialAdmin(ContributionAdmin):
    content_type = "testimonial"


@admin.register(ForumThread)
class ForumThreadAdmin(ContributionAdmin):
    content_type = "forum_thread"


@admin.register(ForumPost)
class ForumPostAdmin(ContributionAdmin):
    content_type = "forum_post"


@admin.register(Vote)
class VoteAdmin(ReadOnlyAdmin):
    list_display = ["id", "store", "content_type", "object_id", "created_at"]
    list_filter = ["content_type", "store"]


@admin.register(Flag)
class FlagAdmin(ReadOnlyAdmin):
    list_display = ["id", "store", "content_type", "object_id", "reason", "note", "created_at"]
    list_filter = ["reason", "content_type", "store"]


@admin.register(ProductSummary)
class ProductSummaryAdmin(ReadOnlyAdmin):
    list_display = ["product", "store", "review_count", "rating_sum", "version", "updated_at"]
    list_select_related = ["product", "store"]


@admin.register(StoreOrigin)
class StoreOriginAdmin(admin.ModelAdmin):
    list_display = ["origin", "store", "created_at"]
    list_filter = ["store"]

    def save_model(self, request, obj, form, change):
        if change:
            services.store_origin_remove(store=obj.store, origin=form.initial.get("origin", ""))
        row = services.store_origin_add(store=obj.store, origin=obj.origin)
        obj.pk = row.pk

    def delete_model(self, request, obj):
        services.store_origin_remove(store=obj.store, origin=obj.origin)
