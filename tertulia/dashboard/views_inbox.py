"""The team inbox in the dashboard: the views of conversations, one conversation with its thread and the
person beside it, replies, notes, assignment, status, presence, and the inbox's settings pages.

Thin over inbox (selectors for the reads, services for every write). Every action is a plain form post
answered with a redirect (or the page again, with the error beside its field), so the inbox works
without scripts; inbox.js adds the keyboard, presence and the canned-reply picker on top. Only people
who can answer (`services.can_answer`) write; the others read, and their posts answer 403. The settings
pages are for owners, managers and community managers.
"""

import re
from datetime import datetime, timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.models import AbstractBaseUser
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from tertulia.core.errors import ApiError, error_response
from tertulia.core.models import Store
from tertulia.dashboard import formatting, selectors
from tertulia.dashboard.views import _page, store_view
from tertulia.dashboard.views_listening import INTENTS, NETWORKS, SENTIMENTS, safe_url
from tertulia.inbox import canned, services
from tertulia.inbox import selectors as inbox_selectors
from tertulia.inbox.business_hours import DAYS
from tertulia.inbox.models import Conversation, ConversationKind, ConversationStatus, Priority

PER_PAGE = 50
HEARTBEAT_SECONDS = 10
LANGUAGES = ("es", "en")
LIST_KEYS = ("view", "team", "kind", "network", "priority", "q")

VIEWS = {
    "mine": gettext_lazy("Mine"),
    "unassigned": gettext_lazy("Unassigned"),
    "breaching": gettext_lazy("Breaching SLA"),
    "open": pgettext_lazy("conversation", "Open"),
    "pending": pgettext_lazy("conversation", "Pending"),
    "snoozed": pgettext_lazy("conversation", "Snoozed"),
    "resolved": pgettext_lazy("conversation", "Resolved"),
    "all": pgettext_lazy("conversations", "All"),
}
STATUSES = {
    "open": pgettext_lazy("conversation status", "Open"),
    "pending": pgettext_lazy("conversation status", "Pending"),
    "snoozed": pgettext_lazy("conversation status", "Snoozed"),
    "resolved": pgettext_lazy("conversation status", "Resolved"),
}
KINDS = {
    "mention": pgettext_lazy("conversation kind", "Mention"),
    "direct": pgettext_lazy("conversation kind", "Direct message"),
    "question": pgettext_lazy("conversation kind", "Product question"),
    "review": pgettext_lazy("conversation kind", "Review"),
    "email": pgettext_lazy("conversation kind", "E-mail"),
}
PRIORITIES = {
    "urgent": pgettext_lazy("priority", "Urgent"),
    "high": pgettext_lazy("priority", "High"),
    "normal": pgettext_lazy("priority", "Normal"),
    "low": pgettext_lazy("priority", "Low"),
}
CHANNELS = {**NETWORKS, "widget": gettext_lazy("Widget"), "reviews": gettext_lazy("Reviews")}
DELIVERY_STATUSES = {
    "scheduled": pgettext_lazy("delivery", "Scheduled"),
    "sending": pgettext_lazy("delivery", "Sending"),
    "sent": pgettext_lazy("delivery", "Sent"),
    "delivered": pgettext_lazy("delivery", "Delivered"),
    "failed": pgettext_lazy("delivery", "Failed"),
    "skipped": pgettext_lazy("delivery", "Not sent"),
    "cancelled": pgettext_lazy("delivery", "Cancelled"),
}
VARIABLES = {
    "customer_name": gettext_lazy("the person's first name, or their name or handle as the network shows it"),
    "handle": gettext_lazy("their handle or address"),
    "agent_name": gettext_lazy("the first name (or user name) of the agent answering"),
    "store_name": gettext_lazy("the store's name"),
    "store_url": gettext_lazy("the store's website"),
    "product": gettext_lazy("the product the conversation is about, when it names one"),
    "order_number": gettext_lazy("the person's latest order number, when known"),
}
WEEKDAYS = {
    "mon": gettext_lazy("Monday"), "tue": gettext_lazy("Tuesday"), "wed": gettext_lazy("Wednesday"),
    "thu": gettext_lazy("Thursday"), "fri": gettext_lazy("Friday"), "sat": gettext_lazy("Saturday"),
    "sun": gettext_lazy("Sunday"),
}
POSTS_TO_INBOX = {
    "actionable": gettext_lazy("Questions, complaints, purchase intent, negative posts, and everything addressed "
                               "to the store"),
    "all": gettext_lazy("Every post heard"),
    "addressed": gettext_lazy("Only mentions of the store's accounts and private messages"),
    "none": pgettext_lazy("inbox rule", "None"),
}
REVIEWS_TO_INBOX = {
    "negative": gettext_lazy("Reviews of 3 stars or fewer"),
    "all": gettext_lazy("Every review"),
    "none": pgettext_lazy("inbox rule", "None"),
}
ANSWERABLE = ("mastodon", "bluesky", "x", "email")


def can_manage(*, store: Store, user: AbstractBaseUser) -> bool:
    if user.is_superuser:
        return True
    return selectors.membership_role(store=store, user=user) in services.MANAGING_ROLES


def _name(user) -> str:
    if user is None:
        return ""
    return user.get_full_name() or user.get_username()


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _deny(request: HttpRequest, store: Store, message: str) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"error": {"code": "forbidden", "message": message, "details": []}}, status=403)
    response = _page(request, store, "dashboard/inbox_forbidden.html", "inbox", message=message)
    response.status_code = 403
    return response


def _int(value: object) -> int | None:
    text = str(value or "")
    return int(text) if text.isdigit() and len(text) < 19 else None


def _label(table: dict, code: str) -> str:
    return str(table.get(code, code or ""))


# --- the list -------------------------------------------------------------------------------------

def _list_params(query: QueryDict) -> dict[str, str]:
    """The list's own parameters, each checked, so a "back to the list" link can carry them safely."""
    params = {}
    view = query.get("view", "")
    if view in inbox_selectors.VIEWS:
        params["view"] = view
    if _int(query.get("team")) is not None:
        params["team"] = query["team"]
    for name, table in (("kind", KINDS), ("network", CHANNELS), ("priority", PRIORITIES)):
        if query.get(name, "") in table:
            params[name] = query[name]
    q = query.get("q", "").strip()[:200]
    if q:
        params["q"] = q
    return params


def _list_url(params: dict[str, str]) -> str:
    encoded = _encoded(params)
    return reverse("dashboard:inbox") + (f"?{encoded}" if encoded else "")


def conversation_row(conversation: Conversation, now: datetime) -> dict[str, Any]:
    sla = inbox_selectors.sla_state(conversation, now)
    return {
        "conversation": conversation,
        "priority": _label(PRIORITIES, conversation.priority),
        "kind": _label(KINDS, conversation.kind),
        "network": _label(CHANNELS, conversation.network),
        "status": _label(STATUSES, conversation.status),
        "assignee": _name(conversation.assignee) if conversation.assignee_id else "",
        "sla": sla,
        "sla_target": _("First answer") if sla["target"] == "first_response" else _("Resolution")
        if sla["target"] else "",
    }


@require_GET
@store_view()
def inbox(request: HttpRequest, store: Store) -> HttpResponse:
    user = request.user
    now = timezone.now()
    counts = inbox_selectors.view_counts(store=store, user=user, now=now)
    params = _list_params(request.GET)
    teams = inbox_selectors.teams_with_counts(store=store)
    view = params.get("view") or ("mine" if counts["mine"] else "open")
    team_id = _int(params.get("team"))
    team = next((t for t in teams if t.pk == team_id), None)
    if view == "team" and team is None:
        view = "open"
    params["view"] = view
    if view != "team":
        params.pop("team", None)
    found = inbox_selectors.conversations_view(
        store=store, view=view, user=user, team_id=team.pk if team else None, kind=params.get("kind", ""),
        network=params.get("network", ""), priority=params.get("priority", ""), q=params.get("q", ""), now=now)
    page = Paginator(found, PER_PAGE).get_page(request.GET.get("page"))
    query = _encoded(params)
    notifications = list(inbox_selectors.unread_notifications(store=store, user=user)[:20])
    return _page(
        request, store, "dashboard/inbox.html", "inbox",
        page=page, rows=[conversation_row(c, now) for c in page.object_list], view=view, team=team, teams=teams,
        views=[(key, str(label), counts.get(key)) for key, label in VIEWS.items()],
        params=params, query=query, back=query,
        kinds=list(KINDS.items()), networks=list(CHANNELS.items()), priorities=list(PRIORITIES.items()),
        notifications=[{"notification": n, "kind": _("mentioned you in a note") if n.kind == "mentioned"
                        else _("assigned this conversation to you")} for n in notifications],
        can_manage=can_manage(store=store, user=user),
    )


# --- one conversation ---------------------------------------------------------------------------------

def _reply_limit(conversation: Conversation) -> int:
    limit = services.REPLY_LIMITS.get(conversation.network, 5000)
    # As reply_send counts it: a Mastodon reply starts with the person's @handle.
    prefix = len(conversation.contact_handle) + 2 if conversation.network == "mastodon" else 0
    return max(limit - prefix, 0)


def _answerable(conversation: Conversation) -> bool:
    return conversation.network in ANSWERABLE or bool(conversation.question_id or conversation.review_id)


def _language(store: Store, conversation: Conversation, asked: str = "") -> str:
    if asked in LANGUAGES:
        return asked
    for code in ((conversation.language or "")[:2], (store.language or "")[:2]):
        if code in LANGUAGES:
            return code
    return "es"


def event_text(event, users: dict[int, str], teams: dict[int, str]) -> str:
    details = event.details or {}
    actor = event.actor or _("Tertulia")
    who = users.get(details.get("assignee"), "") or _("someone")
    kind = event.kind
    if kind == "created":
        return _("Conversation opened")
    if kind == "assigned":
        if details.get("auto"):
            return _("Assigned to %(who)s automatically") % {"who": who}
        if details.get("by_reply"):
            return _("%(actor)s took it by answering") % {"actor": actor}
        return _("%(actor)s assigned it to %(who)s") % {"actor": actor, "who": who}
    if kind == "unassigned":
        return _("%(actor)s unassigned it") % {"actor": actor}
    if kind == "team":
        return _("%(actor)s moved it to the team %(team)s") % {
            "actor": actor, "team": teams.get(details.get("team"), "?")}
    if kind == "status":
        if details.get("woken"):
            return _("The snooze ended: open again")
        text = _("%(actor)s changed the status from %(previous)s to %(status)s") % {
            "actor": actor, "previous": _label(STATUSES, details.get("previous", "")),
            "status": _label(STATUSES, details.get("status", ""))}
        until = _aware(details.get("until"))
        if until is not None:
            text += " " + _("(until %(until)s)") % {"until": timezone.localtime(until).strftime("%Y-%m-%d %H:%M")}
        return text
    if kind == "priority":
        values = {"actor": actor, "previous": _label(PRIORITIES, details.get("previous", "")),
                  "priority": _label(PRIORITIES, details.get("priority", ""))}
        if details.get("manual"):
            return _("%(actor)s changed the priority from %(previous)s to %(priority)s") % values
        return _("The priority went from %(previous)s to %(priority)s") % values
    if kind == "reopened":
        return _("Open again: a new message arrived (it was %(previous)s)") % {
            "previous": _label(STATUSES, details.get("previous", ""))}
    if kind == "sla_breached":
        return _("An SLA target was missed")
    return kind


def _aware(value: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if timezone.is_aware(moment) else None


def thread_rows(store: Store, conversation: Conversation) -> list[dict[str, Any]]:
    from django.contrib.auth import get_user_model

    items = inbox_selectors.conversation_thread(store=store, conversation_id=conversation.pk)
    user_ids = {item.event.details.get("assignee") for item in items if item.event is not None
                and isinstance(item.event.details, dict)}
    users = {u.pk: _name(u) for u in get_user_model().objects.filter(pk__in=[i for i in user_ids if isinstance(i, int)])}
    teams = {t.pk: t.name for t in inbox_selectors.teams_with_counts(store=store)}
    rows = []
    for item in items:
        if item.event is not None:
            rows.append({"kind": "event", "at": item.at, "text": event_text(item.event, users, teams)})
            continue
        message = item.message
        row: dict[str, Any] = {"kind": message.direction, "at": item.at, "message": message,
                               "author": message.author_name or _name(message.author_user)}
        if message.mention_id and message.mention is not None:
            row["url"] = safe_url(message.mention.url)
            row["sentiment"] = _label(SENTIMENTS, message.mention.sentiment)
            row["intent"] = _label(INTENTS, message.mention.intent)
        delivery = message.delivery
        if delivery is not None:
            row["delivery"] = {"status": delivery.status, "label": _label(DELIVERY_STATUSES, delivery.status),
                               "reason": delivery.reason, "detail": delivery.detail[:500], "sent_at": delivery.sent_at,
                               "to": delivery.to_address}
        if message.direction == "note":
            row["mentioned"] = [_name(u) for u in message.mentioned_users.all()]
        rows.append(row)
    return rows


def _canned_choices(store: Store, conversation: Conversation, agent) -> list[dict[str, Any]]:
    values = inbox_selectors.canned_values(store=store, conversation=conversation, agent=agent)
    return [{"id": reply.pk, "shortcut": reply.shortcut, "title": reply.title,
             "es": canned.render(reply.body_es, values), "en": canned.render(reply.body_en, values)}
            for reply in inbox_selectors.canned_replies(store=store)]


def _conversation_page(request: HttpRequest, store: Store, conversation: Conversation, *, status: int = 200,
                       errors: dict[str, str] | None = None, form_errors: dict[str, str] | None = None,
                       reply_text: str | None = None, note_text: str = "", canned_id: int | None = None,
                       language: str = "", changed: str = "", viewers: list[dict] | None = None) -> HttpResponse:
    user = request.user
    now = timezone.now()
    writer = services.can_answer(store=store, user=user)
    choices = _canned_choices(store, conversation, user) if writer else []
    language = _language(store, conversation, language)
    if reply_text is None:
        reply_text = ""
        asked = _int(request.GET.get("canned"))
        chosen = next((c for c in choices if c["id"] == asked), None)
        if chosen is not None:  # the picker without scripts: the page comes back with the reply filled in
            reply_text, canned_id = chosen[language], chosen["id"]
    if viewers is None:
        viewers = inbox_selectors.viewers(store=store, conversation_id=conversation.pk, exclude_user_id=user.pk, now=now)
    params = _list_params(QueryDict(request.GET.get("back", "") or request.POST.get("back", "")))
    sla = inbox_selectors.sla_state(conversation, now)
    local_tomorrow = (timezone.localtime(now) + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    response = _page(
        request, store, "dashboard/inbox_conversation.html", "inbox",
        conversation=conversation, thread=thread_rows(store, conversation),
        context=inbox_selectors.customer_context(store=store, customer_id=conversation.customer_id),
        kind=_label(KINDS, conversation.kind), network=_label(CHANNELS, conversation.network),
        status_label=_label(STATUSES, conversation.status), priority_label=_label(PRIORITIES, conversation.priority),
        sla=sla, sla_target=_("First answer") if sla["target"] == "first_response" else _("Resolution"),
        can_answer=writer, answerable=_answerable(conversation), limit=_reply_limit(conversation),
        agents=[{"id": a.pk, "name": _name(a), "username": a.get_username()}
                for a in inbox_selectors.agents(store=store)] if writer else [],
        teams=inbox_selectors.teams_with_counts(store=store) if writer else [],
        priorities=list(PRIORITIES.items()), canned=choices, canned_id=canned_id, language=language,
        languages=LANGUAGES, reply_text=reply_text, note_text=note_text,
        seen_message_id=inbox_selectors.conversation_newest_message_id(store=store, conversation_id=conversation.pk),
        errors=errors or {}, form_errors=form_errors or {}, changed=changed,
        viewers=[_viewer_line(v) for v in viewers], heartbeat=HEARTBEAT_SECONDS,
        back=_encoded(params), back_url=_list_url(params),
        snooze_default=local_tomorrow.strftime("%Y-%m-%dT%H:%M"),
    )
    response.status_code = status
    return response


def _viewer_line(viewer: dict) -> dict:
    if viewer.get("composing"):
        text = _("%(name)s is writing a reply") % {"name": viewer["name"]}
    else:
        text = _("%(name)s is also viewing this conversation") % {"name": viewer["name"]}
    return {"name": viewer["name"], "composing": bool(viewer.get("composing")), "text": text}


def _conversation_or_404(store: Store, conversation_id: int) -> Conversation:
    conversation = inbox_selectors.conversation_get(store=store, conversation_id=conversation_id)
    if conversation is None:
        raise Http404(_("There is no such conversation in this store."))
    return conversation


@require_GET
@store_view()
def conversation_view(request: HttpRequest, store: Store, conversation_id: int) -> HttpResponse:
    conversation = _conversation_or_404(store, conversation_id)
    # Opening the conversation is seeing what the notifications pointed at; it also tells the others
    # someone is here (the page's heartbeat keeps saying so while it stays open).
    services.notifications_read(store=store, user=request.user, conversation_id=conversation.pk)
    viewers = services.presence_touch(store=store, conversation_id=conversation.pk, user=request.user)
    return _conversation_page(request, store, conversation, language=request.GET.get("lang", ""), viewers=viewers)


def _errors_of(error: ApiError) -> tuple[dict[str, str], str]:
    """({field: message}, the error's own message) from a service's ApiError; "holidays[2]" counts as "holidays"."""
    fields: dict[str, str] = {}
    for detail in error.details:
        fields.setdefault(re.sub(r"\[\d+\]$", "", detail.field), detail.message)
    return fields, error.message


def _encoded(params: dict[str, str]) -> str:
    query = QueryDict(mutable=True)
    query.update(params)
    return query.urlencode()


def _after(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    """Back to the conversation, still knowing which list it was opened from."""
    url = reverse("dashboard:inbox_conversation", args=[conversation.pk])
    params = _list_params(QueryDict(request.POST.get("back", "")))
    if params:
        url += "?" + _encoded({"back": _encoded(params)})
    return redirect(url)


def _writer(request: HttpRequest, store: Store, conversation_id: int) -> Conversation | HttpResponse:
    conversation = _conversation_or_404(store, conversation_id)
    if not services.can_answer(store=store, user=request.user):
        return _deny(request, store, _("Only people who answer in this store can change conversations."))
    return conversation


def _failed(request: HttpRequest, store: Store, conversation: Conversation, error: ApiError, form: str,
            **kept: Any) -> HttpResponse:
    if error.status == 404:
        raise Http404(error.message)
    fields, message = _errors_of(error)
    return _conversation_page(request, store, conversation, status=error.status, errors=fields,
                              form_errors={form: message}, **kept)


@require_POST
@store_view()
def reply(request: HttpRequest, store: Store, conversation_id: int) -> HttpResponse:
    conversation = _writer(request, store, conversation_id)
    if isinstance(conversation, HttpResponse):
        return conversation
    text = request.POST.get("text", "")
    resolve = request.POST.get("action") == "resolve"
    canned_id = _int(request.POST.get("canned_reply_id"))
    language = request.POST.get("language", "")
    # "Send anyway" after a 409: the agent saw who answered and still wants theirs to go.
    seen = None if request.POST.get("force") == "1" else _int(request.POST.get("seen_message_id"))
    try:
        services.reply_send(store=store, conversation_id=conversation.pk, user=request.user, text=text, resolve=resolve,
                            canned_reply_id=canned_id, seen_message_id=seen)
    except ApiError as error:
        if error.code == "conversation_changed":
            return _conversation_page(request, store, conversation, status=409, reply_text=text, canned_id=canned_id,
                                      language=language, changed=error.message)
        return _failed(request, store, conversation, error, "reply", reply_text=text, canned_id=canned_id,
                       language=language)
    if resolve:
        messages.success(request, _("Reply on its way; the conversation is resolved."))
    else:
        messages.success(request, _("Reply on its way."))
    return _after(request, conversation)


@require_POST
@store_view()
def note(request: HttpRequest, store: Store, conversation_id: int) -> HttpResponse:
    conversation = _writer(request, store, conversation_id)
    if isinstance(conversation, HttpResponse):
        return conversation
    text = request.POST.get("text", "")
    try:
        services.note_add(store=store, conversation_id=conversation.pk, user=request.user, text=text)
    except ApiError as error:
        return _failed(request, store, conversation, error, "note", note_text=text)
    messages.success(request, _("Note added."))
    return _after(request, conversation)


@require_POST
@store_view()
def assign(request: HttpRequest, store: Store, conversation_id: int) -> HttpResponse:
    conversation = _writer(request, store, conversation_id)
    if isinstance(conversation, HttpResponse):
        return conversation
    who = request.POST.get("assignee", "")
    assignee_id = request.user.pk if who == "me" else _int(who)
    if who not in ("", "me") and assignee_id is None:
        return _conversation_page(request, store, conversation, status=422, errors={"assignee": _("Choose a person.")},
                                  form_errors={"assign": _("The conversation was not reassigned.")})
    team_id = _int(request.POST.get("team"))
    try:
        services.conversation_assign(store=store, conversation_id=conversation.pk, assignee_id=assignee_id,
                                     team_id=team_id, actor=request.user)
    except ApiError as error:
        return _failed(request, store, conversation, error, "assign")
    if assignee_id == request.user.pk:
        messages.success(request, _("The conversation is yours."))
    elif assignee_id is None:
        messages.success(request, _("Nobody has the conversation now."))
    else:
        messages.success(request, _("Conversation reassigned."))
    return _after(request, conversation)


def _local_datetime(value: str) -> datetime | None:
    try:
        moment = datetime.strptime(value.strip()[:16], "%Y-%m-%dT%H:%M")  # noqa: DTZ007 - made aware just below
    except ValueError:
        return None
    return timezone.make_aware(moment, timezone.get_current_timezone())


@require_POST
@store_view()
def status(request: HttpRequest, store: Store, conversation_id: int) -> HttpResponse:
    conversation = _writer(request, store, conversation_id)
    if isinstance(conversation, HttpResponse):
        return conversation
    wanted = request.POST.get("status", "")
    until = None
    if wanted == ConversationStatus.SNOOZED:
        until = _local_datetime(request.POST.get("until", ""))
        if until is None:
            return _conversation_page(request, store, conversation, status=422,
                                      errors={"snoozed_until": _("Choose a date and time.")},
                                      form_errors={"status": _("The conversation was not snoozed.")})
    try:
        services.conversation_status_set(store=store, conversation_id=conversation.pk, status=wanted,
                                         actor=request.user, snoozed_until=until)
    except ApiError as error:
        return _failed(request, store, conversation, error, "status")
    done = {
        "open": _("The conversation is open again."), "pending": _("Waiting for the person to answer."),
        "snoozed": _("Snoozed until %(until)s.") % {
            "until": timezone.localtime(until).strftime("%Y-%m-%d %H:%M") if until else ""},
        "resolved": _("Conversation resolved."),
    }
    messages.success(request, done.get(wanted, ""))
    return _after(request, conversation)


@require_POST
@store_view()
def priority(request: HttpRequest, store: Store, conversation_id: int) -> HttpResponse:
    conversation = _writer(request, store, conversation_id)
    if isinstance(conversation, HttpResponse):
        return conversation
    try:
        services.conversation_priority_set(store=store, conversation_id=conversation.pk,
                                           priority=request.POST.get("priority", ""), actor=request.user)
    except ApiError as error:
        return _failed(request, store, conversation, error, "priority")
    messages.success(request, _("Priority changed."))
    return _after(request, conversation)


@require_POST
@store_view(json=True)
def presence(request: HttpRequest, store: Store, conversation_id: int) -> HttpResponse:
    """The page's heartbeat: this agent is here (and writing, or not); answers who else is."""
    if request.POST.get("leave") == "1":
        services.presence_leave(store=store, conversation_id=conversation_id, user=request.user)
        return JsonResponse({"viewers": []})
    composing = request.POST.get("composing") in ("1", "true") and services.can_answer(store=store, user=request.user)
    try:
        others = services.presence_touch(store=store, conversation_id=conversation_id, user=request.user,
                                         composing=composing)
    except ApiError as error:
        return error_response(error)
    return JsonResponse({
        "viewers": [_viewer_line(v) for v in others],
        "newest_message_id": inbox_selectors.conversation_newest_message_id(store=store, conversation_id=conversation_id),
    })


# --- response times ---------------------------------------------------------------------------------

PERIODS = {"7": 7, "30": 30, "90": 90}



@require_GET
@store_view()
def response_times(request: HttpRequest, store: Store) -> HttpResponse:
    """First-response and resolution times in business hours, per agent and per team (inbox.selectors)."""
    period = request.GET.get("days", "30")
    period = period if period in PERIODS else "30"
    since = timezone.now() - timedelta(days=PERIODS[period])
    tables = []
    for by, title in (("agent", _("Per agent")), ("team", _("Per team"))):
        rows = [{
            "key": row.key or (_("Nobody yet") if by == "agent" else _("No team")),
            "conversations": row.conversations, "answered": row.answered,
            "first_median": formatting.format_duration(row.first_response_median), "first_p90": formatting.format_duration(row.first_response_p90),
            "resolved": row.resolved, "resolution_median": formatting.format_duration(row.resolution_median), "breached": row.breached,
        } for row in inbox_selectors.response_times(store=store, since=since, by=by)]
        tables.append({"by": by, "title": title, "rows": rows})
    return _page(request, store, "dashboard/inbox_times.html", "inbox", tab="times", tables=tables,
                 period=period, periods=list(PERIODS), can_manage=can_manage(store=store, user=request.user))


# --- settings: canned replies, teams, inbox rules -------------------------------------------------------

def _manager(request: HttpRequest, store: Store) -> HttpResponse | None:
    if can_manage(store=store, user=request.user):
        return None
    return _deny(request, store, _("Only owners, managers and community managers can change the inbox settings."))


@require_GET
@store_view()
def canned_list(request: HttpRequest, store: Store) -> HttpResponse:
    denied = _manager(request, store)
    if denied:
        return denied
    return _page(request, store, "dashboard/inbox_canned.html", "inbox", tab="canned",
                 replies=inbox_selectors.canned_replies(store=store))


def _canned_form(request: HttpRequest, store: Store, *, reply=None, values: dict | None = None,
                 errors: dict | None = None, message: str = "", status: int = 200) -> HttpResponse:
    if values is None:
        values = {"shortcut": reply.shortcut, "title": reply.title, "body_es": reply.body_es,
                  "body_en": reply.body_en} if reply else {}
    response = _page(request, store, "dashboard/inbox_canned_form.html", "inbox", tab="canned", reply=reply,
                     values=values, errors=errors or {}, form_error=message,
                     variables=[(name, str(VARIABLES.get(name, text))) for name, text in canned.VARIABLES.items()])
    response.status_code = status
    return response


@require_http_methods(["GET", "POST"])
@store_view()
def canned_edit(request: HttpRequest, store: Store, canned_reply_id: int | None = None) -> HttpResponse:
    denied = _manager(request, store)
    if denied:
        return denied
    reply = None
    if canned_reply_id is not None:
        reply = inbox_selectors.canned_reply_get(store=store, canned_reply_id=canned_reply_id)
        if reply is None:
            raise Http404
    if request.method == "GET":
        return _canned_form(request, store, reply=reply)
    values = {name: request.POST.get(name, "") for name in ("shortcut", "title", "body_es", "body_en")}
    if reply is not None:
        values["shortcut"] = reply.shortcut  # the shortcut names the reply; a new name is a new reply
    elif any(r.shortcut == values["shortcut"] for r in inbox_selectors.canned_replies(store=store)):
        return _canned_form(request, store, values=values, status=422,
                            errors={"shortcut": _("There is a canned reply with that shortcut already.")},
                            message=_("The canned reply was not saved."))
    try:
        saved = services.canned_reply_set(store=store, actor=request.user, **values)
    except ApiError as error:
        fields, message = _errors_of(error)
        return _canned_form(request, store, reply=reply, values=values, errors=fields, message=message,
                            status=error.status)
    messages.success(request, _("Canned reply “%(shortcut)s” saved.") % {"shortcut": saved.shortcut})
    return redirect("dashboard:inbox_canned")


@require_POST
@store_view()
def canned_delete(request: HttpRequest, store: Store, canned_reply_id: int) -> HttpResponse:
    denied = _manager(request, store)
    if denied:
        return denied
    if not services.canned_reply_delete(store=store, canned_reply_id=canned_reply_id):
        raise Http404
    messages.success(request, _("Canned reply deleted."))
    return redirect("dashboard:inbox_canned")


def _teams_page(request: HttpRequest, store: Store, *, team=None, values: dict | None = None,
                errors: dict | None = None, message: str = "", status: int = 200) -> HttpResponse:
    agents = inbox_selectors.agents(store=store)
    if values is None:
        if team is not None:
            memberships = {m.user_id: m.available for m in inbox_selectors.team_members(team=team)}
            values = {"name": team.name, "auto_assign": team.auto_assign, "max_open_per_agent": team.max_open_per_agent,
                      "members": set(memberships), "away": {uid for uid, ok in memberships.items() if not ok}}
        else:
            values = {"name": "", "auto_assign": True, "max_open_per_agent": 10, "members": set(), "away": set()}
    response = _page(request, store, "dashboard/inbox_teams.html", "inbox", tab="teams", team=team,
                     teams=inbox_selectors.teams_with_members(store=store), values=values, errors=errors or {},
                     form_error=message, agents=[{"id": a.pk, "name": _name(a), "username": a.get_username()}
                                                 for a in agents])
    response.status_code = status
    return response


@require_http_methods(["GET", "POST"])
@store_view()
def teams(request: HttpRequest, store: Store, team_id: int | None = None) -> HttpResponse:
    denied = _manager(request, store)
    if denied:
        return denied
    team = None
    if team_id is not None:
        team = next((t for t in inbox_selectors.teams_with_counts(store=store) if t.pk == team_id), None)
        if team is None:
            raise Http404
    if request.method == "GET":
        return _teams_page(request, store, team=team)
    members = [uid for uid in (_int(v) for v in request.POST.getlist("members")) if uid is not None]
    away = {uid for uid in (_int(v) for v in request.POST.getlist("away")) if uid is not None}
    cap = _int(request.POST.get("max_open_per_agent"))
    values = {"name": request.POST.get("name", ""), "auto_assign": request.POST.get("auto_assign") == "on",
              "max_open_per_agent": request.POST.get("max_open_per_agent", ""), "members": set(members), "away": away}
    if cap is None:
        return _teams_page(request, store, team=team, values=values, status=422,
                           errors={"max_open_per_agent": _("Between 1 and 1000.")}, message=_("The team was not saved."))
    if team is None and any(t.name == values["name"].strip() for t in inbox_selectors.teams_with_counts(store=store)):
        # team_set would take the existing team and replace its members: a new team needs a new name.
        return _teams_page(request, store, values=values, status=422, message=_("The team was not saved."),
                           errors={"name": _("There is a team with that name already.")})
    try:
        saved = services.team_set(store=store, name=values["name"], member_ids=members,
                                  auto_assign=values["auto_assign"], max_open_per_agent=cap,
                                  team_id=team.pk if team else None)
    except ApiError as error:
        if error.status == 404:
            raise Http404 from None
        fields, message = _errors_of(error)
        return _teams_page(request, store, team=team, values=values, errors=fields, message=message,
                           status=error.status)
    for uid in members:
        services.team_member_available(store=store, team_id=saved.pk, user_id=uid, available=uid not in away)
    messages.success(request, _("Team “%(name)s” saved.") % {"name": saved.name})
    return redirect("dashboard:inbox_teams")


def _hours_text(pairs: list) -> str:
    return ", ".join(f"{start}-{end}" for start, end in pairs or [])


def _settings_values(row) -> dict[str, Any]:
    return {
        "hours": {day: _hours_text((row.business_hours or {}).get(day, [])) for day in DAYS},
        "holidays": "\n".join(str(day) for day in row.holidays or []),
        "first_response": {p: (row.first_response_minutes or {}).get(p, "") for p in Priority.values},
        "resolution": {p: (row.resolution_minutes or {}).get(p, "") for p in Priority.values},
        "routing": {k: str((row.routing or {}).get(k, "")) for k in ConversationKind.values},
        "default_team": str(row.default_team_id or ""),
        "posts_to_inbox": row.posts_to_inbox, "reviews_to_inbox": row.reviews_to_inbox,
    }


_HOURS = re.compile(r"^\s*(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*$")


def _parse_settings(post: QueryDict) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(changes for inbox_settings_update, the values to show again, errors found before asking the service)."""
    errors: dict[str, str] = {}
    hours: dict[str, list[list[str]]] = {}
    shown: dict[str, Any] = {"hours": {}, "first_response": {}, "resolution": {}, "routing": {}}
    for day in DAYS:
        text = post.get(f"hours_{day}", "").strip()
        shown["hours"][day] = text
        pairs = []
        for piece in filter(None, (part.strip() for part in text.split(","))):
            match = _HOURS.match(piece)
            if match is None:
                errors[f"business_hours.{day}"] = _("Write opening hours as 09:00-14:00, 16:00-19:00.")
                break
            pairs.append([match[1].zfill(5), match[2].zfill(5)])
        hours[day] = pairs
    holidays_text = post.get("holidays", "")
    shown["holidays"] = holidays_text
    holidays = [piece for piece in re.split(r"[\s,;]+", holidays_text) if piece]
    minutes: dict[str, dict[str, int]] = {"first_response_minutes": {}, "resolution_minutes": {}}
    for key, prefix, slot in (("first_response_minutes", "first", "first_response"),
                              ("resolution_minutes", "resolution", "resolution")):
        for level in Priority.values:
            raw = post.get(f"{prefix}_{level}", "").strip()
            shown[slot][level] = raw
            number = _int(raw)
            if number is None:
                errors[key] = _("Minutes (1 to 86400) per priority: urgent, high, normal, low.")
            else:
                minutes[key][level] = number
    routing = {}
    for kind in ConversationKind.values:
        raw = post.get(f"route_{kind}", "")
        shown["routing"][kind] = raw
        if _int(raw) is not None:
            routing[kind] = int(raw)
    shown["default_team"] = post.get("default_team", "")
    shown["posts_to_inbox"] = post.get("posts_to_inbox", "")
    shown["reviews_to_inbox"] = post.get("reviews_to_inbox", "")
    changes = {"business_hours": hours, "holidays": holidays, **minutes, "routing": routing,
               "default_team": _int(shown["default_team"]), "posts_to_inbox": shown["posts_to_inbox"],
               "reviews_to_inbox": shown["reviews_to_inbox"]}
    return changes, shown, errors


@require_http_methods(["GET", "POST"])
@store_view()
def inbox_settings(request: HttpRequest, store: Store) -> HttpResponse:
    denied = _manager(request, store)
    if denied:
        return denied
    errors: dict[str, str] = {}
    message = ""
    status = 200
    if request.method == "POST":
        changes, values, errors = _parse_settings(request.POST)
        if not errors:
            try:
                services.inbox_settings_update(store=store, changes=changes)
            except ApiError as error:
                errors, message = _errors_of(error)
                status = error.status
            else:
                messages.success(request, _("Inbox settings saved."))
                return redirect("dashboard:inbox_settings")
        else:
            message, status = _("The inbox settings were not saved."), 422
    else:
        values = _settings_values(inbox_selectors.inbox_settings_for(store_id=store.pk))
    response = _page(
        request, store, "dashboard/inbox_settings.html", "inbox", tab="settings", values=values, errors=errors,
        form_error=message,
        hours_rows=[{"day": day, "name": str(WEEKDAYS[day]), "text": values["hours"].get(day, ""),
                     "error": errors.get(f"business_hours.{day}", "")} for day in DAYS],
        minute_rows=[{"level": level, "name": str(name), "first": values["first_response"].get(level, ""),
                      "resolution": values["resolution"].get(level, "")} for level, name in PRIORITIES.items()],
        route_rows=[{"kind": kind, "name": str(name), "team": _int(values["routing"].get(kind))}
                    for kind, name in KINDS.items()],
        default_team=_int(values["default_team"]), teams=inbox_selectors.teams_with_counts(store=store),
        posts_choices=list(POSTS_TO_INBOX.items()), reviews_choices=list(REVIEWS_TO_INBOX.items()),
        zone=store.timezone)
    response.status_code = status
    return response
