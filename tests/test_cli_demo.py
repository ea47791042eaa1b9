"""`tertulia demo` end to end: seed, serve with the API key, stop cleanly on signals, reuse on a second run."""

import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TERTULIA = str(Path(sys.executable).with_name("tertulia"))
STARTUP = 120  # seconds: generous for a loaded CI machine; a limit, not a measurement


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Demo:
    def __init__(self, home: Path, port: int):
        self.home, self.port = home, port
        env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "ALLOWED_HOSTS")}
        env["TERTULIA_HOME"] = str(home)
        self.out_path = home.parent / f"demo-{port}.out"
        self.err_path = home.parent / f"demo-{port}.err"
        self._out, self._err = self.out_path.open("w"), self.err_path.open("w")
        self.process = subprocess.Popen([TERTULIA, "demo", "--port", str(port)], env=env, stdout=self._out,
                                        stderr=self._err)

    @property
    def output(self) -> str:
        return self.out_path.read_text() + self.err_path.read_text()

    def wait_ready(self) -> dict:
        deadline = time.monotonic() + STARTUP
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"demo exited early:\n{self.output}"
            if "ready at" in self.out_path.read_text():
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"demo not ready in time:\n{self.output}")
        return json.loads((self.home / "demo-credentials.json").read_text())

    def children(self) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                found.append(int(entry.name))
        return found

    def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=60)
        finally:
            self._out.close()
            self._err.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            for child in self.children():
                os.kill(child, signal.SIGKILL)
            self.process.kill()
            self.process.wait()


def request(url: str, key: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Authorization": f"Bearer {key}",
                                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def count_all(base: str, key: str, resource: str) -> int:
    total, cursor = 0, None
    while True:
        query = f"?limit=500&cursor={cursor}" if cursor else "?limit=500"
        status, page = request(f"{base}/api/v1/{resource}{query}", key)
        assert status == 200, page
        total += len(page["data"])
        cursor = page["next_cursor"]
        if not cursor:
            return total


def db_counts(home: Path) -> dict[str, int]:
    with sqlite3.connect(home / "tertulia.sqlite3") as connection:
        store_id = connection.execute("SELECT id FROM core_store WHERE slug = 'demo'").fetchone()[0]
        return {
            table: connection.execute(f"SELECT count(*) FROM {table} WHERE store_id = ?", (store_id,)).fetchone()[0]  # noqa: S608
            for table in ("catalog_product", "catalog_category", "customers_customer", "customers_consentchange",
                          "commerce_cart", "commerce_order", "events_event")
        }


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_demo_seeds_serves_stops_cleanly_and_reuses_its_data(tmp_path):
    home = tmp_path / "home"
    first = Demo(home, free_port())
    try:
        credentials = first.wait_ready()
        assert set(credentials) == {"url", "username", "password", "store", "api_key", "shopify_secret",
                                    "woocommerce_secret"}
        assert stat.S_IMODE((home / "demo-credentials.json").stat().st_mode) == 0o600
        assert credentials["url"] == f"http://127.0.0.1:{first.port}"
        assert credentials["store"] == "demo" and credentials["username"] == "demo"
        assert credentials["api_key"] in first.output and credentials["password"] in first.output
        base, key = credentials["url"], credentials["api_key"]

        assert request(f"{base}/healthz", key) == (200, {"status": "ok", "database": "sqlite"})
        status, answer = request(f"{base}/api/v1/events", key, {
            "id": "test-cart-1", "type": "cart_updated", "occurred_at": "2026-01-10T10:00:00Z",
            "data": {"cart_id": "test-cart-1", "customer": {"email": "visita@example.com"},
                     "items": [{"sku": "ACE-001", "quantity": 1, "price": "12.50"}], "total": "12.50",
                     "currency": "EUR"}})
        assert (status, answer["accepted"]) == (200, 1), answer
        assert request(f"{base}/api/v1/products", "tk_wrong_key")[0] == 401

        assert 45 <= count_all(base, key, "products") <= 60
        assert count_all(base, key, "customers") == 201  # 200 seeded + the visitor above
        counts = db_counts(home)
        assert counts["customers_customer"] == 201
        assert counts["catalog_category"] >= 5
        assert counts["commerce_order"] > 50 and counts["commerce_cart"] > counts["commerce_order"]
        with sqlite3.connect(home / "tertulia.sqlite3") as connection:
            sources = dict(connection.execute("SELECT source, count(*) FROM events_event GROUP BY source"))
            statuses = {row[0] for row in connection.execute("SELECT status FROM commerce_order")}
            consent = {row[0] for row in connection.execute("SELECT DISTINCT status FROM customers_consent")}
        assert sources["api"] == 1 and sources["demo"] > 1000
        assert {"fulfilled", "delivered", "cancelled"} <= statuses
        assert {"subscribed", "unsubscribed", "pending_confirmation"} <= consent

        servers = first.children()
        assert servers, "gunicorn should run as a child of the demo"
        code = first.stop(signal.SIGINT)
    finally:
        first.kill()
    assert code == 0, first.output
    assert not any(alive(pid) for pid in servers), "gunicorn outlived the demo"
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", first.port)) != 0

    second = Demo(home, free_port())
    try:
        again = second.wait_ready()
        assert "Reusing the demo store" in second.output and "Seeding" not in second.output
        assert again["url"] == f"http://127.0.0.1:{second.port}"
        assert {k: v for k, v in again.items() if k != "url"} == {k: v for k, v in credentials.items() if k != "url"}
        assert db_counts(home) == counts
        assert count_all(again["url"], again["api_key"], "customers") == 201
        code = second.stop(signal.SIGTERM)
    finally:
        second.kill()
    assert code == 0, second.output


def test_demo_refuses_a_port_in_use(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
        env["TERTULIA_HOME"] = str(tmp_path / "home")
        result = subprocess.run([TERTULIA, "demo", "--port", str(port)], env=env, capture_output=True, text=True,
                                timeout=120, check=False)
    assert result.returncode == 1
    assert "port is in use" in result.stderr


def test_demo_history_is_deterministic_for_a_seed():
    from datetime import UTC, datetime

    from tertulia.ops.demo_data import demo_events_build

    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert demo_events_build(seed=7, now=now) == demo_events_build(seed=7, now=now)
    assert demo_events_build(seed=7, now=now) != demo_events_build(seed=8, now=now)
    every = [event for phase in demo_events_build(seed=7, now=now) for event in phase]
    assert all(event["occurred_at"] <= "2026-03-01T12:00:00Z" for event in every)


def test_demo_seed_goes_through_event_ingestion(db):
    from tertulia.catalog.models import Category, Product
    from tertulia.commerce.models import Cart, Order
    from tertulia.customers.models import Consent, Customer, Identity
    from tertulia.events.models import Event
    from tertulia.ops.demo_data import demo_store_seed

    store = demo_store_seed().store

    assert store.slug == "demo" and store.currency == "EUR" and store.language == "es"
    assert 45 <= Product.objects.for_store(store).count() <= 60
    assert Category.objects.for_store(store).filter(parent__isnull=False).exists()
    assert Customer.objects.for_store(store).count() == 200
    phones = Identity.objects.for_store(store).filter(kind="phone").values_list("value", flat=True)
    assert phones and all(value.startswith("+34") for value in phones)
    assert Identity.objects.for_store(store).filter(kind__in=["instagram", "x", "mastodon", "bluesky"]).exists()
    assert set(Customer.objects.for_store(store).values_list("language", flat=True)) == {"es", "en"}
    assert set(Consent.objects.for_store(store).values_list("channel", flat=True)) == {"email", "sms", "social_dm"}
    assert Consent.objects.for_store(store).filter(status="unsubscribed").exists()
    assert Cart.objects.for_store(store).filter(status="open").exists()
    assert Cart.objects.for_store(store).filter(status="converted").count() == Order.objects.for_store(store).count()
    assert {"delivered", "cancelled"} <= set(Order.objects.for_store(store).values_list("status", flat=True))
    events = Event.objects.for_store(store)
    assert events.exclude(source="demo").count() == 0
    assert events.filter(type="order_delivered", customer__isnull=False).count() == events.filter(
        type="order_delivered").count()  # moments are tied to the buyer, for the customer timeline


def test_demo_access_is_reused_while_it_works_and_reissued_when_lost(db):
    from tertulia.core.models import ApiKey, Membership
    from tertulia.core.services import api_key_authenticate, store_create
    from tertulia.ops.services import demo_access_ensure

    store = store_create(slug="demo", name="Demo")
    first = demo_access_ensure(store=store)
    assert not first.reused
    assert Membership.objects.for_store(store).get(user__username="demo").role == "owner"
    assert api_key_authenticate(secret=first.api_key).store_id == store.pk

    again = demo_access_ensure(store=store, password=first.password, api_key=first.api_key)
    assert again == type(first)(first.username, first.password, first.api_key, reused=True)

    lost = demo_access_ensure(store=store)
    assert lost.api_key != first.api_key and lost.password != first.password
    assert api_key_authenticate(secret=first.api_key) is None  # the forgotten key no longer works
    assert ApiKey.objects.for_store(store).filter(revoked_at__isnull=True).count() == 1
