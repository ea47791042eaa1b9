"""Property: across random interleavings of events, no message is ever sent without consent on its channel
at send time, and nothing goes out on a channel after the person unsubscribed from it (until they
subscribe again).

Steps drawn by hypothesis: consent granted or withdrawn per person and channel (consent_changed
events), an unsubscribe link followed (channels.tracking), cart updates and orders (which the
journeys' trigger sweep turns into enrollments and scheduled steps), messages outside journeys,
time passing (minutes to a day, so quiet hours and the frequency cap come into play) and dispatch
runs. The adapter checks, at the moment of every send, the consent the test itself recorded last
and the consent the database holds.
"""

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from dispatch_doubles import RecordingAdapter
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tertulia.channels.dispatch import dispatch_run
from tertulia.channels.models import Delivery
from tertulia.core.services import store_create
from tertulia.customers.models import Consent, Customer
from tertulia.events.services import events_ingest
from tertulia.journeys.definitions import journeys_ensure_defaults
from tertulia.journeys.triggers import sweep_state_reset, triggers_sweep

T0 = datetime(2025, 1, 15, 9, 0, tzinfo=UTC)
PEOPLE = 3
CHANNELS = ("email", "sms")
_stores = itertools.count(1)

person = st.integers(min_value=0, max_value=PEOPLE - 1)
channel = st.sampled_from(CHANNELS)
action = st.one_of(
    st.tuples(st.just("consent"), person, channel, st.sampled_from(["subscribed", "unsubscribed",
                                                                    "pending_confirmation"])),
    st.tuples(st.just("unsubscribe_link"), person, channel),
    st.tuples(st.just("cart"), person, st.integers(min_value=0, max_value=2)),
    st.tuples(st.just("empty_cart"), person),
    st.tuples(st.just("order"), person),
    st.tuples(st.just("message"), person, channel),
    st.tuples(st.just("wait"), st.sampled_from([60, 1800, 3600 * 3, 3600 * 17, 3600 * 25])),
    st.tuples(st.just("dispatch")),
)


def who(n: int) -> dict:
    return {"email": f"p{n}@example.com", "phone": f"+3460000000{n}"}


class World:
    def __init__(self, store):
        self.store = store
        self.now = T0
        self.tick = itertools.count(1)
        self.consent: dict[tuple[int, str], str] = {}  # (person number, channel) -> what the test last said
        self.ids: dict[int, int] = {}
        self.violations: list[str] = []
        self.sent = 0

    def moment(self) -> datetime:
        # Strictly increasing event times, so "the newest consent change wins" is unambiguous.
        return self.now + timedelta(microseconds=next(self.tick))

    def ingest(self, type_: str, data: dict) -> None:
        events_ingest(store=self.store, events=[{"id": f"e{next(self.tick)}", "type": type_,
                                                 "occurred_at": self.moment().isoformat(), "data": data}],
                      now=self.now)

    def customer_id(self, n: int) -> int:
        if n not in self.ids:
            self.ingest("customer_upserted", {"customer": who(n)})
            self.ids[n] = Customer.objects.for_store(self.store).get(identities__value=who(n)["email"]).pk
        return self.ids[n]

    def check_send(self, message) -> None:
        delivery = Delivery.objects.get(pk=message.delivery_id)
        number = next((n for n, cid in self.ids.items() if cid == delivery.customer_id), None)
        said = self.consent.get((number, delivery.channel))
        held = Consent.objects.filter(customer_id=delivery.customer_id, channel=delivery.channel).values_list(
            "status", flat=True).first()
        if said != "subscribed" or held != "subscribed":
            self.violations.append(f"sent {delivery.journey_key or 'message'}/{delivery.step_key} on "
                                   f"{delivery.channel} to person {number}: test says {said}, database says {held}")
        self.sent += 1


def apply(world: World, step: tuple) -> None:
    kind = step[0]
    if kind == "consent":
        _, n, chan, status = step
        world.customer_id(n)
        world.ingest("consent_changed", {"customer": who(n), "channel": chan, "status": status})
        world.consent[(n, chan)] = status
    elif kind == "unsubscribe_link":
        _, n, chan = step
        from tertulia.channels.tracking import unsubscribe_record

        delivery = Delivery.objects.for_store(world.store).filter(customer_id=world.customer_id(n), channel=chan).first()
        if delivery is not None:
            unsubscribe_record(delivery=delivery, one_click=True, now=world.moment())
            world.consent[(n, chan)] = "unsubscribed"
    elif kind == "cart":
        _, n, variant = step
        world.customer_id(n)
        world.ingest("cart_updated", {"cart_id": f"cart-{n}", "customer": who(n), "currency": "EUR",
                                      "total": f"{10 * (variant + 1)}.00",
                                      "items": [{"sku": "SKU-1", "quantity": variant + 1, "price": "10.00"}]})
    elif kind == "empty_cart":
        _, n = step
        world.customer_id(n)
        world.ingest("cart_updated", {"cart_id": f"cart-{n}", "customer": who(n), "items": [], "total": "0.00", "currency": "EUR"})
    elif kind == "order":
        _, n = step
        world.customer_id(n)
        world.ingest("order_placed", {"order_id": f"order-{next(world.tick)}", "cart_id": f"cart-{n}",
                                      "customer": who(n), "currency": "EUR", "total": "10.00",
                                      "items": [{"sku": "SKU-1", "quantity": 1, "price": "10.00"}]})
    elif kind == "message":
        # A message outside journeys (an inbox reply): consent rules it all the same.
        _, n, chan = step
        Delivery.objects.create(store=world.store, customer_id=world.customer_id(n), channel=chan,
                                due_at=world.now, to_address=who(n)["phone" if chan == "sms" else "email"],
                                subject="Re: tu pedido", body_text="Hola")
    elif kind == "wait":
        world.now += timedelta(seconds=step[1])
    elif kind == "dispatch":
        _sweep(world)
        dispatch_run(worker="prop", now=world.now)


def _sweep(world: World) -> None:
    sweep_state_reset()
    triggers_sweep(now=world.now, store=world.store, full=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(steps=st.lists(action, min_size=1, max_size=25))
def test_no_message_without_consent_at_send_time(db, settings_override, steps):
    with transaction.atomic():
        store = store_create(slug=f"prop-{next(_stores)}", name="Propiedad")
        journeys_ensure_defaults(store=store)
        world = World(store)
        RecordingAdapter.reset()
        RecordingAdapter.on_send = world.check_send
        try:
            for step in [*steps, ("dispatch",), ("wait", 3600 * 25), ("dispatch",)]:
                apply(world, step)
                assert not world.violations, world.violations
        finally:
            RecordingAdapter.reset()
            transaction.set_rollback(True)


def test_the_property_test_does_send_messages(db, settings_override):
    """Guard against a vacuous property: with consent, the same steps do send."""
    with transaction.atomic():
        store = store_create(slug="prop-live", name="Propiedad")
        world = World(store)
        RecordingAdapter.reset()
        RecordingAdapter.on_send = world.check_send
        try:
            for step in [("consent", 0, "email", "subscribed"), ("message", 0, "email"), ("message", 1, "email"),
                         ("consent", 0, "sms", "subscribed"), ("message", 0, "sms"), ("unsubscribe_link", 0, "sms"),
                         ("dispatch",)]:
                apply(world, step)
            assert not world.violations
            assert world.sent == 1
        finally:
            RecordingAdapter.reset()
            transaction.set_rollback(True)


@pytest.fixture
def settings_override(settings):
    settings.TERTULIA_CHANNEL_ADAPTERS = {"email": "dispatch_doubles.RecordingAdapter",
                                          "sms": "dispatch_doubles.RecordingAdapter"}
    return settings


def test_the_journey_path_is_exercised_too(db, settings_override):
    """The same steps reach journey messages: an abandoned cart gets its e-mail, and after an unsubscribe nothing."""
    with transaction.atomic():
        store = store_create(slug="prop-journey", name="Propiedad")
        from tertulia.journeys.definitions import journeys_ensure_defaults

        journeys_ensure_defaults(store=store)
        world = World(store)
        RecordingAdapter.reset()
        RecordingAdapter.on_send = world.check_send
        try:
            for step in [("consent", 0, "email", "subscribed"), ("consent", 1, "email", "subscribed"),
                         ("cart", 0, 1), ("cart", 1, 1), ("wait", 1800), ("dispatch",)]:
                apply(world, step)
            journey_sends = [m for m in RecordingAdapter.sent if "/r/" in m.text or "/u/" in m.text]
            assert len(journey_sends) == 2, [m.subject for m in RecordingAdapter.sent]
            for step in [("unsubscribe_link", 0, "email"), ("cart", 0, 2), ("wait", 3600 * 25), ("dispatch",),
                         ("wait", 3600 * 25), ("dispatch",)]:
                apply(world, step)
            assert not world.violations
            assert {Delivery.objects.get(pk=m.delivery_id).customer_id for m in RecordingAdapter.sent} \
                == {world.ids[0], world.ids[1]}
        finally:
            RecordingAdapter.reset()
            transaction.set_rollback(True)
