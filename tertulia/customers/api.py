"""GET /api/v1/customers (lookups by identity), one profile with its consent, and export / erase a person."""

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Field, Path, Query, Router, Schema
from pydantic import ConfigDict

from tertulia.commerce.api import CartOut, OrderOut
from tertulia.core.api import request_store
from tertulia.core.pagination import MAX_ID, READ_ERRORS, ErrorOut, PageParams, page_fetch
from tertulia.customers.models import Channel, ConsentStatus, IdentityKind
from tertulia.customers.privacy import customer_erase, customer_export
from tertulia.customers.selectors import consent_current, customer_get, customers_list

router = Router(tags=["customers"])


class IdentityOut(Schema):
    kind: IdentityKind = Field(..., description="email, phone, external (the shop's customer id) or a social network.")
    value: str = Field(..., description="Normalised: e-mail in lower case, phone in E.164, handle without @.")
    verified: bool
    created_at: datetime


class CustomerOut(Schema):
    id: int
    external_id: str = Field(..., description="The customer's id in the shop, if it sent one.")
    first_name: str
    last_name: str
    language: str
    timezone: str
    created_at: datetime
    updated_at: datetime
    erased_at: datetime | None = Field(..., description="Set once the person's data was erased.")
    identities: list[IdentityOut]


class ConsentState(Schema):
    status: ConsentStatus
    changed_at: datetime
    source: str


class ConsentByChannel(Schema):
    """Current consent per channel; null where the person never gave or refused it."""

    email: ConsentState | None
    sms: ConsentState | None
    social_dm: ConsentState | None


class ConsentChangeOut(Schema):
    id: int
    channel: Channel
    status: ConsentStatus
    source: str
    occurred_at: datetime
    recorded_at: datetime
    evidence: dict[str, Any]


class CustomerDetail(CustomerOut):
    merged_into_id: int | None = Field(..., description="Set when this profile was merged into another one.")
    interests: list[str] = Field(..., description="External ids of the categories the person is interested in.")
    consent: ConsentByChannel
    consent_ledger: list[ConsentChangeOut] = Field(..., description="Every consent change, oldest first.")

    @staticmethod
    def resolve_interests(customer) -> list[str]:
        return [category.external_id for category in customer.interests.all()]

    @staticmethod
    def resolve_consent(customer) -> dict:
        return consent_current(customer=customer)

    @staticmethod
    def resolve_consent_ledger(customer) -> list:
        return list(customer.consent_changes.all())


class CustomerPage(Schema):
    data: list[CustomerOut]
    next_cursor: str | None


class CustomerFilters(PageParams):
    email: str | None = Field(None, max_length=320, description="Any spelling; normalised before the lookup.")
    phone: str | None = Field(None, max_length=64, description="International format, e.g. +34600111222.")
    handle: str | None = Field(None, max_length=300, description="network:handle, e.g. `x:ana` or `mastodon:ana@mastodon.social`.")


CustomerId = Path(..., ge=1, le=MAX_ID, description="Customer id.")


# Export rows carry every stored column; `extra="allow"` lets columns added later reach the person too.
class _ExportRow(Schema):
    model_config = ConfigDict(extra="allow")


class ExportProfile(_ExportRow):
    id: int
    external_id: str
    first_name: str
    last_name: str
    language: str
    timezone: str
    merged_into_id: int | None
    erased_at: datetime | None
    profile_updated_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ExportCustomer(ExportProfile):
    interests: list[str]


class ExportIdentity(_ExportRow):
    id: int
    customer_id: int
    kind: str
    value: str
    verified: bool
    created_at: datetime


class ExportConsentChange(_ExportRow):
    id: int
    customer_id: int
    channel: str
    status: str
    source: str
    occurred_at: datetime
    recorded_at: datetime
    evidence: dict[str, Any]


class ExportCart(CartOut):
    """A cart as the read API shows it; any column added later is exported too."""

    model_config = ConfigDict(extra="allow")


class ExportOrder(OrderOut):
    model_config = ConfigDict(extra="allow")


class ExportEvent(_ExportRow):
    id: int
    client_id: str
    type: str
    occurred_at: datetime
    received_at: datetime
    source: str
    payload: dict[str, Any] = Field(..., description="The event as received (scrubbed if the person was erased).")
    customer_id: int | None


class CustomerExport(Schema):
    exported_at: datetime
    store: str
    customer: ExportCustomer
    merged_profiles: list[ExportProfile] = Field(..., description="Older profiles found to be the same person.")
    identities: list[ExportIdentity]
    consent: ConsentByChannel
    consent_ledger: list[ExportConsentChange]
    carts: list[ExportCart]
    orders: list[ExportOrder]
    events: list[ExportEvent] = Field(..., description="Every event about the person, oldest first.")


class ErasureOut(Schema):
    customer_id: int = Field(..., description="The person's surviving profile (the id asked about may be merged into it).")
    erased_at: datetime = Field(..., description="When the person was first erased; repeating the call keeps it.")
    profiles_erased: int
    identities_deleted: int
    consent_changes_scrubbed: int
    events_scrubbed: int
    carts_scrubbed: int
    messages_scrubbed: int = Field(..., description="Messages sent to the person whose address and words were removed.")
    contributions_anonymised: int = Field(..., description="Reviews, questions, answers... left as anonymous content.")


_ONE = {**READ_ERRORS, 404: ErrorOut}


@router.get("/customers", response={200: CustomerPage, **READ_ERRORS}, summary="List or look up customers")
def list_customers(request: HttpRequest, filters: Query[CustomerFilters]):
    """Profiles in id order, merged profiles left out. Lookup filters combine with AND."""
    customers = customers_list(store=request_store(request), email=filters.email, phone=filters.phone,
                               handle=filters.handle)
    return page_fetch(customers, cursor=filters.cursor, limit=filters.limit)


@router.get("/customers/{customer_id}", response={200: CustomerDetail, **_ONE}, summary="Get a customer")
def get_customer(request: HttpRequest, customer_id: int = CustomerId):
    """One profile with identities, current consent per channel and the consent ledger."""
    return customer_get(store=request_store(request), customer_id=customer_id)


@router.get("/customers/{customer_id}/export", response={200: CustomerExport, **_ONE},
            summary="Export everything held on a person")
def export_customer(request: HttpRequest, customer_id: int = CustomerId):
    """Profile, identities, consent and its ledger, carts, orders and events: the answer to an access request."""
    return customer_export(store=request_store(request), customer_id=customer_id)


@router.post("/customers/{customer_id}/erase", response={200: ErasureOut, 403: ErrorOut, **_ONE},
             summary="Erase a person")
def erase_customer(request: HttpRequest, customer_id: int = CustomerId):
    """Remove or anonymise the person's data, keeping the store's figures. Needs a read_write key; idempotent."""
    return customer_erase(store=request_store(request), customer_id=customer_id).as_dict()
