"""customers.services used directly: the single consent change that later features (unsubscribe) record."""

from datetime import UTC, datetime, timedelta

from tertulia.customers.models import Consent, ConsentChange
from tertulia.customers.services import consent_record, customer_resolve

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def test_consent_record_appends_and_only_the_newest_change_is_current(store):
    ana = customer_resolve(store=store, identities=[("email", "ana@example.com")])
    first = consent_record(store=store, customer_id=ana.pk, channel="email", status="subscribed",
                           source="form", occurred_at=T0, evidence={"ip": "192.0.2.1"})
    assert first.status == "subscribed" and first.evidence == {"ip": "192.0.2.1"}
    later = consent_record(store=store, customer_id=ana.pk, channel="email", status="unsubscribed",
                           source="unsubscribe_link", occurred_at=T0 + timedelta(days=3))
    stale = consent_record(store=store, customer_id=ana.pk, channel="email", status="subscribed",
                           source="import", occurred_at=T0 + timedelta(days=1))
    assert later.source == "unsubscribe_link" and stale.source == "import"
    current = Consent.objects.for_store(store).get(customer=ana, channel="email")
    assert (current.status, current.change_id) == ("unsubscribed", later.pk)
    assert ConsentChange.objects.for_store(store).filter(customer=ana).count() == 3
