"""Background e-mails of the community, sent through Django's mail by the worker (plain text only).

Kept simple on purpose (docs/ugc.md): these are direct Django e-mails, not channels.Delivery rows.
Each task re-reads the world when it runs, so a retry or a late run sends nothing stale.
"""

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django_tasks import task

from tertulia.commerce.models import Order, OrderStatus
from tertulia.customers.models import Channel, Consent, ConsentStatus, Identity, IdentityKind
from tertulia.ugc.models import Question, Status
from tertulia.ugc.moderating import reason_text, reasons_of

logger = logging.getLogger(__name__)

INVITE_LIMIT = 20


def _noun(content_type: str) -> str:
    nouns = {
        "review": _("your review"), "question": _("your question"), "answer": _("your answer"),
        "comment": _("your comment"), "testimonial": _("your testimonial"), "forum_thread": _("your thread"),
        "forum_post": _("your post"),
    }
    return nouns.get(content_type, _("your message"))


def _excerpt(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@task()
def author_notice_send(content_type: str, content_id: int, language: str = "es") -> str:
    """Tell the author what happened to their contribution and why. Returns what was done."""
    from tertulia.ugc.services import MODELS

    model = MODELS.get(content_type)
    item = model.objects.select_related("store").filter(pk=content_id).first() if model else None
    if item is None or not item.author_email:
        return "nothing to send"
    store = item.store
    with translation.override(language):
        noun = _noun(content_type)
        if item.status == Status.PUBLISHED:
            subject = _("%(store)s: we have published %(what)s") % {"store": store.name, "what": noun}
            lead = _("Good news: %(what)s is now public. Thank you for taking part.") % {"what": noun}
        elif item.status == Status.HELD:
            subject = _("%(store)s: %(what)s is waiting for a moderator") % {"store": store.name, "what": noun}
            lead = _("A moderator will read %(what)s before it is published.") % {"what": noun}
        elif item.status == Status.REJECTED:
            subject = _("%(store)s: we did not publish %(what)s") % {"store": store.name, "what": noun}
            lead = _("We did not publish %(what)s because it does not follow the community rules.") % {"what": noun}
        else:
            return "still pending"
        reasons = [reason_text(code, language) for code in reasons_of(item.moderation or {}, item.status)]
        lines = [lead, ""]
        if reasons:
            lines += [_("Why:"), *[f"- {reason}" for reason in reasons], ""]
        lines += [_("What you wrote:"), _excerpt(item.text), "", _("Negative opinions are welcome; only the community rules decide what is published."),
                  "", store.name]
    send_mail(subject, "\n".join(lines), settings.DEFAULT_FROM_EMAIL, [item.author_email])
    return f"sent {item.status}"


def _buyer_addresses(question: Question) -> list[tuple[str, str]]:
    """(e-mail, language) of up to INVITE_LIMIT earlier buyers of the product who accept e-mail, newest first."""
    store_id, sku = question.store_id, question.product.sku
    orders = (Order.objects.filter(store_id=store_id, customer__isnull=False)
              .exclude(status=OrderStatus.CANCELLED).order_by("-placed_at", "-id")
              .values_list("customer_id", "items", "customer__language")[:2000])
    buyers: dict[int, str] = {}
    for customer_id, items, language in orders:
        if customer_id == question.customer_id or customer_id in buyers:
            continue
        if any(isinstance(line, dict) and line.get("sku") == sku for line in items or []):
            buyers[customer_id] = language or ""
        if len(buyers) >= INVITE_LIMIT * 3:
            break
    consenting = set(Consent.objects.filter(store_id=store_id, customer_id__in=buyers, channel=Channel.EMAIL,
                                            status=ConsentStatus.SUBSCRIBED).values_list("customer_id", flat=True))
    emails: dict[int, str] = {}
    for customer_id, value in (Identity.objects.filter(store_id=store_id, customer_id__in=consenting,
                                                       kind=IdentityKind.EMAIL).order_by("id")
                               .values_list("customer_id", "value")):
        emails.setdefault(customer_id, value)
    chosen = [(emails[c], buyers[c]) for c in buyers if c in emails]
    return chosen[:INVITE_LIMIT]


@task()
def question_buyers_invite(question_id: int) -> str:
    """Ask earlier buyers of the product (who accept e-mail from the store) to answer a published question."""
    question = Question.objects.select_related("store", "product").filter(pk=question_id).first()
    if question is None or question.status != Status.PUBLISHED or question.buyers_invited_at is not None:
        return "nothing to do"
    store, product = question.store, question.product
    sent = 0
    for email, customer_language in _buyer_addresses(question):
        language = customer_language if customer_language in ("es", "en") else store.language
        with translation.override(language if language in ("es", "en") else "es"):
            subject = _("%(store)s: a shopper has a question about %(product)s") % {
                "store": store.name, "product": product.title}
            body = "\n".join([
                _("You bought %(product)s. Another shopper asks:") % {"product": product.title},
                "",
                _excerpt(question.text),
                "",
                _("If you can help, answer on the product page:"),
                product.url or store.website_url or "",
                "",
                _("You get this e-mail because you accept e-mails from %(store)s.") % {"store": store.name},
            ])
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [email])
        sent += 1
    Question.objects.filter(pk=question.pk, buyers_invited_at__isnull=True).update(buyers_invited_at=timezone.now())
    return f"invited {sent}"
