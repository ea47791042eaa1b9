"""Reads on customers: lookups by identity, a profile with its consent, and who a person is."""

from django.db.models import Prefetch, QuerySet

from tertulia.core.errors import ApiError, ErrorDetail
from tertulia.core.models import Store
from tertulia.customers.identity import InvalidIdentity, normalize_email, normalize_handle, normalize_phone
from tertulia.customers.models import Channel, Consent, ConsentChange, Customer, Identity

_IDENTITIES = Prefetch("identities", queryset=Identity.objects.order_by("kind", "value"))


def _lookup_error(field: str, error: InvalidIdentity) -> ApiError:
    return ApiError("invalid_request", "The request has invalid parameters.", 422,
                    [ErrorDetail(field=field, code=error.code, message=error.message)])


def identity_parse_filters(*, email: str | None = None, phone: str | None = None,
                           handle: str | None = None) -> list[tuple[str, str]]:
    """Normalise lookup values the way identities are stored, or raise 422 naming the bad one."""
    keys: list[tuple[str, str]] = []
    if email is not None:
        try:
            keys.append(("email", normalize_email(email)))
        except InvalidIdentity as exc:
            raise _lookup_error("email", exc) from None
    if phone is not None:
        try:
            keys.append(("phone", normalize_phone(phone)))
        except InvalidIdentity as exc:
            raise _lookup_error("phone", exc) from None
    if handle is not None:
        network, separator, value = handle.partition(":")
        if not separator:
            raise _lookup_error("handle", InvalidIdentity("invalid_handle", "Write the handle as network:handle, e.g. x:ana."))
        try:
            keys.append((network.strip().lower(), normalize_handle(network.strip().lower(), value)))
        except InvalidIdentity as exc:
            raise _lookup_error("handle", exc) from None
    return keys


def customers_list(*, store: Store, email: str | None = None, phone: str | None = None,
                   handle: str | None = None) -> QuerySet[Customer]:
    """Live profiles (merged ones left out) holding every identity asked for; erased people hold none."""
    customers = Customer.objects.for_store(store).filter(merged_into__isnull=True).prefetch_related(_IDENTITIES)
    for kind, value in identity_parse_filters(email=email, phone=phone, handle=handle):
        # One filter() per identity: a person must hold all of them, each through its own join.
        customers = customers.filter(identities__kind=kind, identities__value=value)
    return customers


def customer_get(*, store: Store, customer_id: int) -> Customer:
    """One profile with identities, interests, current consent and the whole ledger, in a fixed number of queries."""
    customer = (
        Customer.objects.for_store(store)
        .prefetch_related(
            _IDENTITIES,
            "interests",
            Prefetch("consents", queryset=Consent.objects.select_related("change").order_by("channel")),
            Prefetch("consent_changes", queryset=ConsentChange.objects.order_by("occurred_at", "id")),
        )
        .filter(pk=customer_id)
        .first()
    )
    if customer is None:
        raise ApiError("not_found", f"No customer {customer_id} in this store.", 404)
    return customer


def customer_person_ids(*, store: Store, customer_id: int) -> tuple[int, list[int]]:
    """The surviving profile of the person `customer_id` names, and every profile id that is that person.

    A merged profile still answers by its old id, so a request about it is about the whole person.
    """
    row = Customer.objects.for_store(store).filter(pk=customer_id).values_list("pk", "merged_into_id").first()
    if row is None:
        raise ApiError("not_found", f"No customer {customer_id} in this store.", 404)
    survivor_id = row[1] or row[0]
    merged = Customer.objects.for_store(store).filter(merged_into_id=survivor_id).values_list("pk", flat=True)
    return survivor_id, [survivor_id, *sorted(merged)]


def consent_current(*, customer: Customer) -> dict[str, dict | None]:
    """Current consent per channel (None where the person never said), from a `customer_get` profile."""
    state: dict[str, dict | None] = dict.fromkeys(Channel.values)
    for consent in customer.consents.all():
        state[consent.channel] = {"status": consent.status, "changed_at": consent.changed_at,
                                  "source": consent.change.source}
    return state
