"""Writes on customers: identity resolution and merging, consent, export and erasure."""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson
from django.db import transaction
from django.utils import timezone

from tertulia.core.db import (
    chunks,
    db_datetime,
    execute_many,
    insert_returning,
    insert_rows,
    is_sqlite,
    select_in,
)
from tertulia.core.models import Store
from tertulia.customers.models import Consent, ConsentChange, Customer

logger = logging.getLogger(__name__)

PROFILE_FIELDS = ("first_name", "last_name", "language", "timezone")


@dataclass(slots=True)
class PersonRef:
    """Identities that name one person, plus profile fields to apply when the person is new."""

    identities: Sequence[tuple[str, str]]
    fields: dict[str, str]


def _identity_owners(store: Store, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    by_kind: dict[str, set[str]] = {}
    for kind, value in keys:
        by_kind.setdefault(kind, set()).add(value)
    owner: dict[tuple[str, str], int] = {}
    for kind, values in by_kind.items():
        for value, customer_id in select_in(
            "SELECT value, customer_id FROM customers_identity WHERE store_id = %s AND kind = %s",
            [store.pk, kind], "value", sorted(values),
        ):
            owner[(kind, value)] = customer_id
    return owner


def customers_resolve(*, store: Store, people: Sequence[PersonRef]) -> list[int]:
    """Find or create the customer for each person; merge profiles that turn out to be one person.

    Batched: one query finds every known identity, one insert creates the unknown people, one
    insert attaches their identities. Must run inside a transaction.
    """
    keys = {key for person in people for key in person.identities}
    if not keys:
        return []
    owner = _identity_owners(store, keys)

    result: list[int | None] = [None] * len(people)
    new_people: dict[tuple[str, str], int] = {}  # first identity of a new person -> index of its group
    groups: list[list[int]] = []
    for position, person in enumerate(people):
        known = {owner[key] for key in person.identities if key in owner}
        if len(known) > 1:
            survivor = customers_merge(store=store, customer_ids=sorted(known))
            for key in person.identities:
                if key in owner:
                    owner[key] = survivor
            known = {survivor}
        if known:
            result[position] = known.pop()
            continue
        group = next((new_people[key] for key in person.identities if key in new_people), None)
        if group is None:
            group = len(groups)
            groups.append([])
        groups[group].append(position)
        for key in person.identities:
            new_people[key] = group

    created: list[int] = []
    if groups:
        now = db_datetime(timezone.now())
        rows = []
        for members in groups:
            fields = people[members[0]].fields
            rows.append((store.pk, "", fields.get("first_name", ""), fields.get("last_name", ""),
                         fields.get("language", ""), fields.get("timezone", ""), now, now))
        for part in chunks(rows, 500):
            created.extend(row[0] for row in insert_rows(
                "customers_customer",
                ["store_id", "external_id", "first_name", "last_name", "language", "timezone", "created_at", "updated_at"],
                part, returning=["id"]))
        for members, customer_id in zip(groups, created, strict=True):
            for position in members:
                result[position] = customer_id

    # Attach identities not yet known (new people, and new identities of known people).
    missing: dict[tuple[str, str], int] = {}
    for position, person in enumerate(people):
        for key in person.identities:
            if key not in owner and key not in missing:
                missing[key] = result[position]  # type: ignore[assignment]
    if missing:
        now = db_datetime(timezone.now())
        attached: set[tuple[str, str]] = set()
        for part in chunks(sorted(missing.items()), 500):  # sorted: one lock order for all writers
            attached.update(
                (kind, value) for kind, value in insert_returning(
                    "customers_identity", ["store_id", "customer_id", "kind", "value", "verified", "created_at"],
                    [(store.pk, cid, kind, value, False, now) for (kind, value), cid in part],
                    conflict=["store_id", "kind", "value"], returning=["kind", "value"])
            )
        lost = set(missing) - attached
        if lost:
            result = _settle_races(store, people, result, _identity_owners(store, lost), fresh=set(created))
    return [cid for cid in result if cid is not None]


def _settle_races(store: Store, people: Sequence[PersonRef], result: list, winners: dict[tuple[str, str], int],
                  *, fresh: set[int]) -> list:
    """Another transaction claimed some identities first; make each person one profile again.

    A profile we created a moment ago that lost the race folds into the winner (its other
    identities move over and the empty row goes); an existing profile that turns out to share
    an identity with another is merged like any other pair. Races are common when concurrent
    batches meet the same new shoppers, so the fold is done set-wise.
    """
    replaced: dict[int, int] = {}

    def settle(customer_id: int) -> int:
        while customer_id in replaced:
            customer_id = replaced[customer_id]
        return customer_id

    for position, person in enumerate(people):
        mine = settle(result[position])
        owners = {settle(c) for c in (winners.get(key) for key in person.identities) if c is not None}
        owners.discard(mine)
        if not owners:
            continue
        target = owners.pop() if len(owners) == 1 else customers_merge(store=store, customer_ids=sorted(owners))
        if mine in fresh:
            replaced[mine] = target
        else:
            survivor = customers_merge(store=store, customer_ids=sorted({mine, target}))
            for merged in {mine, target} - {survivor}:
                replaced[merged] = survivor
    orphans = sorted(c for c in replaced if c in fresh)
    if orphans:
        execute_many(
            "UPDATE customers_identity SET customer_id = %s WHERE store_id = %s AND customer_id = %s",
            [(settle(orphan), store.pk, orphan) for orphan in orphans],
        )
        Customer.objects.for_store(store).filter(pk__in=orphans)._raw_delete(using="default")
    return [settle(c) for c in result]


def customers_survivors(*, store: Store, customer_ids: set[int]) -> dict[int, int]:
    """For profiles among these that were merged away, the profile each now lives on."""
    if not customer_ids:
        return {}
    return dict(select_in(
        "SELECT id, merged_into_id FROM customers_customer WHERE store_id = %s AND merged_into_id IS NOT NULL",
        [store.pk], "id", sorted(customer_ids),
    ))


def customer_resolve(*, store: Store, identities: Sequence[tuple[str, str]], fields: dict[str, str] | None = None) -> Customer:
    with transaction.atomic():
        (customer_id,) = customers_resolve(store=store, people=[PersonRef(identities, fields or {})])
        return Customer.objects.for_store(store).get(pk=customer_id)


def customer_update_profile(*, store: Store, customer_id: int, fields: dict[str, str]) -> None:
    changes = {key: value for key, value in fields.items() if key in PROFILE_FIELDS and value}
    if changes:
        Customer.objects.for_store(store).filter(pk=customer_id).update(updated_at=timezone.now(), **changes)


def customers_merge(*, store: Store, customer_ids: Sequence[int]) -> int:
    """Fold several profiles into the oldest: every record pointing at the others moves to it."""
    survivor_id, *others = sorted(customer_ids)
    if not others:
        return survivor_id
    survivor = Customer.objects.for_store(store).get(pk=survivor_id)
    losers = list(Customer.objects.for_store(store).filter(pk__in=others))
    _merge_consents(store=store, survivor_id=survivor_id, loser_ids=[c.pk for c in losers])
    for relation in Customer._meta.related_objects:
        # Every table that points at a customer follows the survivor, including apps added later.
        if relation.many_to_many or relation.related_model in (Consent, Customer):
            continue
        attname = relation.field.attname
        relation.related_model._base_manager.filter(**{f"{attname}__in": others}).update(**{attname: survivor_id})
    for loser in losers:
        survivor.interests.add(*loser.interests.all())
        for field in PROFILE_FIELDS:
            if not getattr(survivor, field) and getattr(loser, field):
                setattr(survivor, field, getattr(loser, field))
        if not survivor.external_id and loser.external_id:
            survivor.external_id = loser.external_id
    survivor.updated_at = timezone.now()
    survivor.save()
    Customer.objects.for_store(store).filter(pk__in=others).update(merged_into_id=survivor_id, updated_at=timezone.now())
    Customer.objects.for_store(store).filter(merged_into_id__in=others).update(merged_into_id=survivor_id)
    logger.info("customers merged", extra={"store": store.slug, "survivor": survivor_id, "merged": others})
    return survivor_id


def _merge_consents(*, store: Store, survivor_id: int, loser_ids: list[int]) -> None:
    ConsentChange.objects.for_store(store).filter(customer_id__in=loser_ids).update(customer_id=survivor_id)
    Consent.objects.for_store(store).filter(customer_id__in=[survivor_id, *loser_ids]).delete()
    consent_rebuild(store=store, customer_id=survivor_id)


def consent_rebuild(*, store: Store, customer_id: int) -> None:
    """Derive the current consent per channel from the ledger: the latest change wins."""
    latest: dict[str, ConsentChange] = {}
    for change in ConsentChange.objects.for_store(store).filter(customer_id=customer_id).order_by("occurred_at", "id"):
        latest[change.channel] = change
    Consent.objects.for_store(store).filter(customer_id=customer_id).delete()
    Consent.objects.bulk_create(
        [
            Consent(store=store, customer_id=customer_id, channel=channel, status=change.status,
                    changed_at=change.occurred_at, change=change)
            for channel, change in latest.items()
        ]
    )


@dataclass(slots=True)
class ConsentFact:
    customer_id: int
    channel: str
    status: str
    source: str
    occurred_at: datetime
    evidence: dict


def consents_record(*, store: Store, facts: Sequence[ConsentFact]) -> None:
    """Append many consent changes to the ledger and move each current state to its newest change.

    The batched form of `consent_record`, for ingestion: one insert for the ledger, one guarded
    upsert for the current state (an older change never overwrites a newer one).
    """
    if not facts:
        return
    lite = is_sqlite()
    recorded = db_datetime(timezone.now(), sqlite=lite)
    ordered = sorted(facts, key=lambda f: (f.customer_id, f.channel, f.occurred_at))
    ids = [row[0] for part in chunks(ordered, 500) for row in insert_rows(
        "customers_consentchange",
        ["store_id", "customer_id", "channel", "status", "source", "occurred_at", "recorded_at", "evidence"],
        [(store.pk, f.customer_id, f.channel, f.status, f.source, db_datetime(f.occurred_at, sqlite=lite), recorded,
          orjson.dumps(f.evidence).decode()) for f in part],
        returning=["id"],
    )]
    newest: dict[tuple[int, str], tuple[ConsentFact, int]] = {}
    for fact, change_id in zip(ordered, ids, strict=True):
        newest[(fact.customer_id, fact.channel)] = (fact, change_id)  # sorted by time: the last one wins
    rows = [(store.pk, fact.customer_id, fact.channel, fact.status, db_datetime(fact.occurred_at, sqlite=lite), change_id)
            for (fact, change_id) in (newest[key] for key in sorted(newest))]
    for part in chunks(rows, 500):
        insert_returning(
            "customers_consent", ["store_id", "customer_id", "channel", "status", "changed_at", "change_id"], part,
            conflict=["customer_id", "channel"], returning=["id"],
            update=(
                "status = excluded.status, changed_at = excluded.changed_at, change_id = excluded.change_id "
                "WHERE excluded.changed_at >= customers_consent.changed_at"
            ),
        )


def consent_record(
    *,
    store: Store,
    customer_id: int,
    channel: str,
    status: str,
    source: str,
    occurred_at: datetime | None = None,
    evidence: dict | None = None,
) -> ConsentChange:
    """Append one change to the ledger and move the current state if this change is the newest."""
    with transaction.atomic():
        consents_record(store=store, facts=[ConsentFact(customer_id, channel, status, source,
                                                        occurred_at or timezone.now(), evidence or {})])
        return ConsentChange.objects.for_store(store).filter(customer_id=customer_id, channel=channel).latest("id")
