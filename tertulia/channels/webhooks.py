"""Twilio's message status callbacks: verify X-Twilio-Signature, then record the status on the Delivery.

Twilio POSTs form fields (MessageSid, MessageStatus, ErrorCode, AccountSid, From, To...) to the
StatusCallback URL each time an outbound message changes status, signed with the account's auth token:
base64(HMAC-SHA1(auth token, full URL + every POST parameter name and value, sorted by name)). Callbacks may
arrive late, twice or out of order, so a status only moves a delivery forward: `delivered` once sets
delivered_at, `failed`/`undelivered` mark it failed with Twilio's error code, anything else is noted.
"""

import base64
import hashlib
import hmac
import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils.timezone import now as utc_now

from tertulia.channels.accounts import channel_account_config
from tertulia.channels.credentials import CredentialsError
from tertulia.channels.models import Delivery, DeliveryStatus
from tertulia.core.errors import ApiError, ErrorDetail
from tertulia.core.models import Store
from tertulia.core.views import webhook_view

logger = logging.getLogger("tertulia.channels.webhooks")

# Twilio's outbound statuses in lifecycle order; a callback never moves a delivery backwards.
_RANK = {"accepted": 1, "scheduled": 1, "queued": 2, "sending": 3, "sent": 4, "failed": 5, "undelivered": 5,
         "delivered": 6, "read": 7, "canceled": 5}
_FAILED = {"failed", "undelivered", "canceled"}


def twilio_signature(*, auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """Twilio's request signature: the URL, then each parameter's name and value sorted by name (then value)."""
    data = url + "".join(name + value for name, value in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def _url_variants(url: str) -> list[str]:
    # Twilio's own validators accept the URL with and without the default port; so do we.
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    variants = [url]
    if parts.port is None and default:
        variants.append(urlunsplit(parts._replace(netloc=f"{parts.netloc}:{default}")))
    elif parts.port == default:
        variants.append(urlunsplit(parts._replace(netloc=parts.hostname or "")))
    return variants


def twilio_signature_verify(*, auth_token: str, urls: list[str], params: list[tuple[str, str]],
                            presented: str | None) -> None:
    """Raise a 403 unless `presented` matches one of the URLs the request may have been signed for."""
    if not presented:
        raise ApiError("missing_signature", "The callback carries no X-Twilio-Signature header.", 403)
    for url in urls:
        for variant in _url_variants(url):
            expected = twilio_signature(auth_token=auth_token, url=variant, params=params)
            if hmac.compare_digest(expected.encode(), presented.strip().encode("utf-8", "replace")):
                return
    raise ApiError("invalid_signature", "The X-Twilio-Signature does not match the URL, the parameters and the "
                   "store's Twilio auth token.", 403)


def delivery_provider_status_record(*, store: Store, provider: str, message_id: str, status: str,
                                    error_code: str = "", now: datetime | None = None) -> Delivery | None:
    """Record a provider's report about one sent message; idempotent and never moves a delivery backwards.

    None when no delivery of the store has that provider id (a message sent by something else).
    """
    moment = now or utc_now()
    status = status.strip().lower()
    with transaction.atomic():
        delivery = (Delivery.objects.for_store(store).select_for_update()
                    .filter(provider=provider, provider_message_id=message_id).first())
        if delivery is None:
            return None
        if _RANK.get(status, 0) < _RANK.get(delivery.provider_status, 0):
            return delivery  # a late or replayed report of an earlier step
        changes: dict[str, object] = {}
        if delivery.provider_status != status:
            changes["provider_status"] = status[:32]
        if status in {"delivered", "read"} and delivery.status in {DeliveryStatus.SENT, DeliveryStatus.DELIVERED}:
            if delivery.status != DeliveryStatus.DELIVERED:
                changes["status"] = DeliveryStatus.DELIVERED
            if delivery.delivered_at is None:
                changes["delivered_at"] = moment
        elif status in _FAILED and delivery.status == DeliveryStatus.SENT:
            changes.update(status=DeliveryStatus.FAILED, reason="undelivered",
                           detail=f"{provider} reported {status}" + (f" (error {error_code})" if error_code else ""))
        if changes:
            changes["updated_at"] = moment
            Delivery.objects.filter(pk=delivery.pk).update(**changes)
            for name, value in changes.items():
                setattr(delivery, name, value)
    return delivery


def _ok(body: bytes = b"") -> HttpResponse:
    # Twilio only needs a 2xx; an empty TwiML document is what it expects from messaging URLs.
    return HttpResponse(body or b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>',
                        status=200, content_type="text/xml")


def _twilio_verified(request: HttpRequest, store_slug: str) -> tuple[Store, object, dict[str, str]]:
    """The store, its Twilio account and the POSTed fields of a request Twilio really signed (403 otherwise)."""
    store = Store.objects.filter(slug=store_slug).first()
    if store is None:
        raise ApiError("unknown_store", f"No store '{store_slug}'. Check the callback URL.", 404)
    try:
        account = channel_account_config(store_id=store.pk, channel="sms")
    except CredentialsError:
        account = None
    if account is None or account.provider != "twilio" or not account.secrets.get("auth_token"):
        raise ApiError("invalid_signature", "This store has no Twilio account, so no signature can match.", 403)
    params = [(name, value) for name, values in request.POST.lists() for value in values]
    urls = [request.build_absolute_uri()]
    public = account.settings.get("status_callback_base_url") or getattr(settings, "TERTULIA_PUBLIC_URL", "")
    if public:
        urls.append(public.rstrip("/") + request.get_full_path())
    twilio_signature_verify(auth_token=account.secrets["auth_token"], urls=urls, params=params,
                            presented=request.headers.get("X-Twilio-Signature"))
    fields = dict(params)
    if fields.get("AccountSid") and fields["AccountSid"] != account.settings.get("account_sid"):
        raise ApiError("invalid_callback", "The callback is for another Twilio account.", 400,
                       [ErrorDetail(field="AccountSid", code="mismatch", message="Not this store's account.")])
    return store, account, fields


@webhook_view
def twilio_status_callback(request: HttpRequest, store_slug: str) -> HttpResponse:
    store, _account, fields = _twilio_verified(request, store_slug)
    problems = [ErrorDetail(field=name, code="required", message="Required.")
                for name in ("MessageSid", "MessageStatus") if not fields.get(name, "").strip()]
    if problems:
        raise ApiError("invalid_callback", "The status callback lacks MessageSid or MessageStatus.", 400, problems)
    delivery = delivery_provider_status_record(store=store, provider="twilio", message_id=fields["MessageSid"][:200],
                                               status=fields["MessageStatus"][:32], error_code=fields.get("ErrorCode", "")[:16])
    logger.info("twilio status callback", extra={"store": store.slug, "message_sid": fields["MessageSid"],
                                                 "message_status": fields["MessageStatus"],
                                                 "delivery_id": delivery.pk if delivery else None})
    return _ok()


@webhook_view
def twilio_inbound_message(request: HttpRequest, store_slug: str) -> HttpResponse:
    """Twilio's incoming-message webhook: a reply of BAJA / STOP withdraws SMS consent and ends the journeys.

    Anything else a shopper texts back is acknowledged and logged (the team inbox of #5 will take it).
    """
    store, _account, fields = _twilio_verified(request, store_slug)
    problems = [ErrorDetail(field=name, code="required", message="Required.")
                for name in ("MessageSid", "From") if not fields.get(name, "").strip()]
    if problems:
        raise ApiError("invalid_callback", "The incoming message lacks MessageSid or From.", 400, problems)
    from tertulia.channels.tracking import opt_out_reply_record

    customer_id = opt_out_reply_record(store=store, channel="sms", address=fields["From"].strip(),
                                       body=fields.get("Body", ""),
                                       evidence={"message_sid": fields["MessageSid"][:64]})
    logger.info("twilio incoming message", extra={"store": store.slug, "message_sid": fields["MessageSid"],
                                                  "opted_out_customer": customer_id})
    return _ok()
