"""The moderation queue: held community content with its reasons, decided one by one or in bulk.

Thin over ugc: `moderation_queue` reads what waits, `content_decide` applies a human decision (status,
audit, caches, the author's e-mail). Everyone in the store may read the queue; only owners, managers
and moderators decide.
"""

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth.models import AbstractBaseUser
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import get_language, gettext_lazy, ngettext
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from tertulia.core.errors import ApiError, error_response
from tertulia.core.models import Role, Store
from tertulia.dashboard import selectors
from tertulia.dashboard.views import _page, store_view
from tertulia.ugc.selectors import moderation_queue
from tertulia.ugc.services import content_decide

PER_PAGE = 50
MAX_DECIDE = 500
DECIDERS = {Role.OWNER, Role.MANAGER, Role.MODERATOR}
ACTIONS = ("approve", "reject")

REASONS = {
    "insult": gettext_lazy("Insult"),
    "personal_attack": gettext_lazy("Personal attack"),
    "rudeness": gettext_lazy("Rudeness"),
    "hate": gettext_lazy("Hate"),
    "repetition": gettext_lazy("Repetition"),
    "promotional": gettext_lazy("Promotional"),
    "off_topic": gettext_lazy("Off topic"),
    "multiple_identities": gettext_lazy("Multiple identities"),
    "impersonation": gettext_lazy("Impersonation"),
    "personal_data": gettext_lazy("Personal data"),
}
KINDS = {
    "review": gettext_lazy("Review"),
    "question": gettext_lazy("Question"),
    "answer": gettext_lazy("Answer"),
    "comment": gettext_lazy("Comment"),
    "testimonial": gettext_lazy("Testimonial"),
    "forum_thread": gettext_lazy("Forum thread"),
    "forum_post": gettext_lazy("Forum post"),
}


def can_decide(*, store: Store, user: AbstractBaseUser) -> bool:
    if user.is_superuser:
        return True
    return selectors.membership_role(store=store, user=user) in DECIDERS


# --- Reading queue items, whatever record shape ugc hands over ------------------------------

def _get(item: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = item.get(name) if isinstance(item, dict) else getattr(item, name, None)
        if value not in (None, ""):
            return value
    return default


@dataclass
class Reason:
    code: str
    label: str
    score: float
    evidence: list[str]


@dataclass
class QueueRow:
    kind: str
    id: int
    title: str
    text: list[tuple[str, bool]]  # the text cut into (piece, is_evidence) so evidence is marked as text
    author: str
    subject: str
    rating: int | None
    verified: bool
    created_at: datetime | None
    status: str
    flags: int = 0
    reasons: list[Reason] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"

    @property
    def kind_label(self) -> str:
        return str(KINDS.get(self.kind, self.kind))


def _results(item: Any) -> list[dict]:
    verdict = _get(item, "verdict", "moderation", default=None)
    results = _get(item, "results", "reasons", default=None)
    if results is None and verdict is not None:
        results = _get(verdict, "results", default=[])
    out = []
    for result in results or []:
        code = str(_get(result, "code", default=""))
        try:
            score = float(_get(result, "score", default=0.0))
        except (TypeError, ValueError):
            score = 0.0
        evidence = [str(piece) for piece in (_get(result, "evidence", default=[]) or []) if str(piece).strip()]
        out.append({"code": code, "score": score, "evidence": evidence})
    return out


def evidence_split(text: str, evidence: list[str]) -> list[tuple[str, bool]]:
    """Cut the text around every evidence fragment (case-insensitive) so a template can mark them.

    Pieces stay plain strings: the template escapes them, nothing here builds markup.
    """
    fragments = sorted({piece for piece in evidence if 0 < len(piece) <= 500}, key=len, reverse=True)
    if not fragments or not text:
        return [(text, False)]
    pattern = re.compile("|".join(re.escape(piece) for piece in fragments), re.IGNORECASE)
    pieces: list[tuple[str, bool]] = []
    last = 0
    for match in pattern.finditer(text):
        if match.start() > last:
            pieces.append((text[last:match.start()], False))
        pieces.append((match.group(0), True))
        last = match.end()
    if last < len(text):
        pieces.append((text[last:], False))
    return pieces


def queue_row(item: Any) -> QueueRow:
    kind = str(_get(item, "content_type", "kind", "type", default=""))
    record = _get(item, "content", "item", "record", default=item)
    results = _results(item) or _results(record)
    text = str(_get(item, "text", default=None) or _get(record, "text", default=""))
    evidence = [piece for result in results for piece in result["evidence"]]
    rating = _get(item, "rating", default=None) or _get(record, "rating", default=None)
    subject = _get(item, "subject", "product_title", "product_name", default=None)
    if subject is None:
        product = _get(record, "product", default=None)
        subject = _get(product, "title", "sku", default="") if product is not None else ""
    author = _get(item, "author", "display_name", "author_name", default=None)
    if author is None:
        author = "" if _get(record, "anonymous", default=False) else _get(record, "display_name", default="")
    return QueueRow(
        kind=kind,
        id=int(_get(item, "id", "content_id", default=None) or _get(record, "pk", "id", default=0)),
        title=str(_get(item, "title", default=None) or _get(record, "title", default="")),
        text=evidence_split(text, evidence),
        author=str(author or ""),
        subject=str(subject or ""),
        rating=int(rating) if rating else None,
        verified=bool(_get(item, "verified", "verified_buyer", default=False) or _get(record, "verified_buyer", default=False)),
        created_at=_get(item, "created_at", default=None) or _get(record, "created_at", default=None),
        status=str(_get(item, "status", default=None) or _get(record, "status", default="held")),
        flags=int(_get(item, "flag_count", "flags", default=0) or 0),
        reasons=[Reason(code=r["code"], label=str(REASONS.get(r["code"], r["code"])), score=r["score"],
                        evidence=r["evidence"]) for r in sorted(results, key=lambda r: -r["score"])],
    )


# --- Views ----------------------------------------------------------------------------------

@require_GET
@store_view()
def moderation(request: HttpRequest, store: Store) -> HttpResponse:
    code = request.GET.get("code", "")
    code = code if code in REASONS else ""
    kind = request.GET.get("type", "")
    kind = kind if kind in KINDS else ""
    found = moderation_queue(store=store, code=code or None, content_type=kind or None,
                             language=(get_language() or "es")[:2])
    page = Paginator(found, PER_PAGE).get_page(request.GET.get("page"))
    rows = [queue_row(item) for item in page.object_list]
    filters = request.GET.copy()
    filters.pop("page", None)
    return _page(
        request, store, "dashboard/moderation.html", "moderation",
        rows=rows, page=page, code=code, kind=kind,
        reasons=[(key, str(label)) for key, label in REASONS.items()],
        kinds=[(key, str(label)) for key, label in KINDS.items()],
        filters=filters.urlencode(), can_decide=can_decide(store=store, user=request.user),
        done=_done_message(request.GET.get("done", "")),
    )


def _done_message(done: str) -> str:
    # After a decision without scripts the page comes back with ?done=approve-3.
    action, _sep, count = done.partition("-")
    if action not in ACTIONS or not count.isdigit() or len(count) > 6:
        return ""
    return _decided_message(action, int(count))


def _decided_message(action: str, count: int) -> str:
    if action == "approve":
        return ngettext("%(count)s item approved.", "%(count)s items approved.", count) % {"count": count}
    return ngettext("%(count)s item rejected.", "%(count)s items rejected.", count) % {"count": count}


def _parse_keys(values: list[str]) -> dict[str, list[int]] | None:
    """{"review": [1, 2], ...} from ["review:1", ...]; None when any key is malformed."""
    grouped: dict[str, list[int]] = {}
    for value in values:
        kind, _sep, number = value.partition(":")
        if kind not in KINDS or not number.isdigit() or len(number) > 18:
            return None
        ids = grouped.setdefault(kind, [])
        if int(number) not in ids:
            ids.append(int(number))
    return grouped


def _back(request: HttpRequest, query: str = "") -> HttpResponse:
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        target = reverse("dashboard:moderation")
    if query:
        target = f"{target}{'&' if '?' in target else '?'}{query}"
    return redirect(target)


def _error(request: HttpRequest, status: int, code: str, message: str, field: str = "") -> HttpResponse:
    if status == 422 and "application/json" not in request.headers.get("Accept", ""):
        # The plain form post (no scripts): back to the queue, saying what to fix.
        messages.error(request, message)
        return _back(request)
    details = [{"field": field, "code": code, "message": message}] if field else []
    return JsonResponse({"error": {"code": code, "message": message, "details": details}}, status=status)


@require_POST
@store_view(json=True)
def moderation_decide(request: HttpRequest, store: Store) -> HttpResponse:
    wants_json = "application/json" in request.headers.get("Accept", "")
    if not can_decide(store=store, user=request.user):
        return _error(request, 403, "forbidden", _("Only owners, managers and moderators can decide."))
    only = request.POST.get("only", "")
    if only:  # one row's own button: "approve:review:12"
        action, _sep, key = only.partition(":")
        keys = [key]
    else:
        action = request.POST.get("action", "")
        keys = request.POST.getlist("items")
    if action not in ACTIONS:
        return _error(request, 422, "invalid_action", _("Choose approve or reject."), "action")
    grouped = _parse_keys(keys)
    if grouped is None:
        return _error(request, 422, "invalid_items", _("Some selected items are not valid."), "items")
    total = sum(len(ids) for ids in grouped.values())
    if not total:
        return _error(request, 422, "nothing_selected", _("Select at least one item."), "items")
    if total > MAX_DECIDE:
        return _error(request, 422, "too_many", _("Decide at most %(limit)s items at once.") % {"limit": MAX_DECIDE},
                      "items")
    try:
        with transaction.atomic():  # all selected kinds decided, or none
            changed = sum(content_decide(store=store, content_type=kind, ids=ids, action=action, user=request.user)
                          for kind, ids in grouped.items())
    except ApiError as error:
        return error_response(error)
    message = _decided_message(action, changed)
    if wants_json:
        return JsonResponse({"action": action, "changed": changed, "items": [f"{k}:{i}" for k, ids in grouped.items()
                                                                             for i in ids], "message": message})
    return _back(request, f"done={action}-{changed}")
