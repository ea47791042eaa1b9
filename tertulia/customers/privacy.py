"""A person's rights over their data (GDPR / LOPDGDD): export everything held on them, or erase it.

Both act on the person, not one row: a profile merged into another is the same person, so asking
about either id covers the survivor and every profile merged into it.

Erasure removes what identifies the person and keeps what the store's figures are made of:
- the profile keeps its id (carts, orders and events still point at it, so counts and revenue hold)
  but loses names, the shop's customer id, language, time zone and interests, and gets `erased_at`;
- identities are deleted, so the person no longer matches any lookup and a later event with the
  same e-mail starts a new, unrelated profile;
- the consent ledger keeps every change (channel, status, source, time: the fact that consent was
  given or withdrawn) but its evidence (IP, form text...) is replaced by a marker;
- events about the person keep type, time, items and totals; personal fields are removed from
  their payloads wherever they occur (native events and shop webhooks alike);
- carts lose their recovery URL (it opens the person's cart); orders hold nothing personal.
"""

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from tertulia.commerce.models import Cart
from tertulia.commerce.selectors import carts_list, orders_list
from tertulia.core.models import Store
from tertulia.customers.models import SOCIAL_KINDS, ConsentChange, Customer, Identity
from tertulia.customers.selectors import consent_current, customer_get, customer_person_ids
from tertulia.events.models import Event
from tertulia.events.selectors import events_about

logger = logging.getLogger(__name__)

ERASED_PROFILE_FIELDS = ("first_name", "last_name", "external_id", "language", "timezone")
ERASED_EVIDENCE = {"erased": True}
# Keys that name, locate or contact a person in native events and in Shopify / WooCommerce payloads.
# Removed at any depth of an event about an erased person; product and money fields stay.
PERSONAL_KEYS = frozenset({
    "customer", "customer_id", "email", "contact_email", "phone", "first_name", "last_name", "handles",
    "evidence", "recovery_url", "abandoned_checkout_url", "tracking_url", "reason", "note", "customer_note",
    "billing", "shipping", "billing_address", "shipping_address", "addresses", "default_address",
    "browser_ip", "client_details", "customer_ip_address", "customer_user_agent", "username", "avatar_url",
    "landing_site", "referring_site", "note_attributes",
})


def _row(instance: Model) -> dict[str, Any]:
    """Every stored column of a row but its store: an export must not leave a field out."""
    return {
        field.attname: getattr(instance, field.attname)
        for field in instance._meta.concrete_fields
        if field.name != "store"
    }


def customer_export(*, store: Store, customer_id: int) -> dict[str, Any]:
    """All data held on the person `customer_id` names, as JSON-ready values (datetimes and decimals aside)."""
    survivor_id, ids = customer_person_ids(store=store, customer_id=customer_id)
    customer = customer_get(store=store, customer_id=survivor_id)
    merged = Customer.objects.for_store(store).filter(pk__in=ids[1:]).order_by("pk")
    return {
        "exported_at": timezone.now(),
        "store": store.slug,
        "customer": {**_row(customer), "interests": [category.external_id for category in customer.interests.all()]},
        "merged_profiles": [_row(profile) for profile in merged],
        "identities": [_row(identity) for identity in customer.identities.all()],
        "consent": consent_current(customer=customer),
        "consent_ledger": [_row(change) for change in customer.consent_changes.all()],
        "carts": [_row(cart) for cart in carts_list(store=store, customer_ids=ids).order_by("pk")],
        "orders": [_row(order) for order in orders_list(store=store, customer_ids=ids).order_by("pk")],
        "events": [_row(event) for event in events_about(store=store, customer_ids=ids).iterator(chunk_size=2000)],
        **_social_export(store, ids),
    }


def _social_export(store: Store, ids: list[int]) -> dict[str, Any]:
    """What listening heard them say and the conversations the team had with them."""
    # Imported here: customers sits below listening and the inbox, which point at it.
    from tertulia.inbox.models import Conversation, Message
    from tertulia.listening.models import Mention

    conversations = list(Conversation.objects.for_store(store).filter(customer_id__in=ids).order_by("pk"))
    messages = Message.objects.for_store(store).filter(conversation__in=conversations).exclude(direction="note")
    return {
        "mentions": [_row(mention) for mention in Mention.objects.for_store(store).filter(customer_id__in=ids)
                     .order_by("pk")],
        "conversations": [_row(conversation) for conversation in conversations],
        "conversation_messages": [_row(message) for message in messages.order_by("pk")],
    }


@dataclass(frozen=True, slots=True)
class Erasure:
    """What one erase call changed; a repeated call finds nothing left and answers with zeros."""

    customer_id: int
    erased_at: datetime
    profiles_erased: int
    identities_deleted: int
    consent_changes_scrubbed: int
    events_scrubbed: int
    carts_scrubbed: int
    messages_scrubbed: int = 0
    contributions_anonymised: int = 0
    mentions_scrubbed: int = 0
    conversations_scrubbed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {field: getattr(self, field) for field in self.__dataclass_fields__}


def scrub_personal(value: Any) -> Any:
    """A copy of a JSON value without the personal keys, at any depth."""
    if isinstance(value, dict):
        return {key: scrub_personal(item) for key, item in value.items() if key not in PERSONAL_KEYS}
    if isinstance(value, list):
        return [scrub_personal(item) for item in value]
    return value


def customer_erase(*, store: Store, customer_id: int) -> Erasure:
    """Remove or anonymise everything that identifies the person; all of it or, on any failure, none."""
    with transaction.atomic():
        survivor_id, ids = customer_person_ids(store=store, customer_id=customer_id)
        profiles = list(Customer.objects.for_store(store).select_for_update().filter(pk__in=ids).order_by("pk"))
        now = timezone.now()
        survivor = next(profile for profile in profiles if profile.pk == survivor_id)
        erased_at = survivor.erased_at or now

        dirty = [
            profile.pk for profile in profiles
            if profile.erased_at is None or any(getattr(profile, field) for field in ERASED_PROFILE_FIELDS)
        ]
        if dirty:
            Customer.objects.for_store(store).filter(pk__in=dirty).update(
                updated_at=now, **dict.fromkeys(ERASED_PROFILE_FIELDS, ""))
            Customer.objects.for_store(store).filter(pk__in=dirty, erased_at__isnull=True).update(erased_at=erased_at)
        Customer.interests.through.objects.filter(customer_id__in=ids).delete()

        emails = list(Identity.objects.for_store(store).filter(customer_id__in=ids, kind="email")
                      .values_list("value", flat=True))
        handles = list(Identity.objects.for_store(store).filter(customer_id__in=ids, kind__in=SOCIAL_KINDS)
                       .values_list("kind", "value"))
        identities_deleted, _ = Identity.objects.for_store(store).filter(customer_id__in=ids).delete()
        messages_scrubbed = _scrub_messages(store, ids)
        contributions = _anonymise_contributions(store, ids, emails)
        mentions_scrubbed, conversations_scrubbed = _forget_social(store, ids, emails, handles)

        changes = [
            change for change in ConsentChange.objects.for_store(store).filter(customer_id__in=ids).only("pk", "evidence")
            if change.evidence != ERASED_EVIDENCE
        ]
        for change in changes:
            change.evidence = dict(ERASED_EVIDENCE)
        ConsentChange.objects.bulk_update(changes, ["evidence"], batch_size=500)

        events_scrubbed = 0
        pending: list[Event] = []
        for event in Event.objects.for_store(store).filter(customer_id__in=ids).only("pk", "payload").iterator(chunk_size=1000):
            scrubbed = scrub_personal(event.payload)
            if scrubbed != event.payload:
                event.payload = scrubbed
                pending.append(event)
            if len(pending) >= 500:
                events_scrubbed += _save_payloads(pending)
        events_scrubbed += _save_payloads(pending)

        carts_scrubbed = Cart.objects.for_store(store).filter(customer_id__in=ids).exclude(recovery_url="").update(
            recovery_url="", updated_at=now)

    result = Erasure(
        customer_id=survivor_id, erased_at=erased_at, profiles_erased=len(dirty),
        identities_deleted=identities_deleted, consent_changes_scrubbed=len(changes),
        events_scrubbed=events_scrubbed, carts_scrubbed=carts_scrubbed,
        messages_scrubbed=messages_scrubbed, contributions_anonymised=contributions,
        mentions_scrubbed=mentions_scrubbed, conversations_scrubbed=conversations_scrubbed,
    )
    logger.info("customer erased", extra={"store": store.slug, **result.as_dict()})
    return result


def _scrub_messages(store: Store, ids: list[int]) -> int:
    """Messages sent to the person keep their journey, step, status and times (the figures hold) but lose
    the address and the words, which carried their name, cart and codes; the outbox copies go."""
    # Imported here: customers sits below channels and journeys, which point at it.
    from tertulia.channels.models import Delivery, OutboxMessage
    from tertulia.journeys.models import Enrollment

    deliveries = Delivery.objects.for_store(store).filter(customer_id__in=ids)
    OutboxMessage.objects.filter(store=store, delivery__in=deliveries).delete()
    Enrollment.objects.for_store(store).filter(customer_id__in=ids).exclude(context={}).update(context={})
    return deliveries.exclude(to_address="", subject="", body_text="", body_html="", links=[]).update(
        to_address="", subject="", body_text="", body_html="", links=[], updated_at=timezone.now())


def _anonymise_contributions(store: Store, ids: list[int], emails: list[str]) -> int:
    """Reviews, questions and answers stay as anonymous content: the text is the store's record, the author is not."""
    from tertulia.moderation.services import judgements_erase
    from tertulia.ugc.services import author_data_erase

    for customer_id in ids:  # the texts and fingerprints moderation kept to spot repeats and sock puppets
        judgements_erase(store=store, customer_id=customer_id)
    changed = sum(author_data_erase(store=store, customer_id=customer_id) for customer_id in ids)
    return changed + sum(author_data_erase(store=store, email=email) for email in emails)


def _forget_social(store: Store, ids: list[int], emails: list[str], handles: list[tuple[str, str]]) -> tuple[int, int]:
    """Mentions keep their figures (network, time, sentiment, intent) but lose the words and the author; the
    inbox's conversations with them lose the handles and what they wrote."""
    from tertulia.inbox.services import conversations_erase
    from tertulia.listening.services import mentions_erase

    addresses = [("email", email) for email in emails] + handles
    return (mentions_erase(store=store, customer_ids=ids, handles=addresses),
            conversations_erase(store=store, customer_ids=ids, handles=addresses))


def _save_payloads(events: list[Event]) -> int:
    count = len(events)
    Event.objects.bulk_update(events, ["payload"], batch_size=500)
    events.clear()
    return count
