"""Operations: /healthz, /metrics (also across processes), request ids and JSON request logs."""

import io
import logging
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
from conftest import make_event
from prometheus_client.parser import text_string_to_metric_families

from tertulia.core.logging import JsonFormatter


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a Prometheus text exposition, keyed by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return samples(response.content.decode())


# --- /healthz --------------------------------------------------------------------------------

@pytest.mark.django_db
def test_healthz_answers_ok_with_the_database_in_use(client):
    from django.db import connection

    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": connection.vendor}


def _run_django(code: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter with Django set up under `env` (settings are read at start-up)."""
    prelude = "import django, os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'tertulia.settings')\ndjango.setup()\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code), *args], env={**os.environ, **env},
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_healthz_is_503_in_the_error_shape_when_the_database_is_unreachable(tmp_path):
    # Nothing listens on port 1: the database is really unreachable, nothing is mocked.
    result = _run_django(
        """
        from django.test import Client
        response = Client().get("/healthz")
        print(response.status_code)
        print(response.content.decode())
        """,
        {"DATABASE_URL": "postgres://postgres@127.0.0.1:1/nowhere", "TERTULIA_HOME": str(tmp_path),
         "LOG_LEVEL": "CRITICAL"},
    )
    assert result.returncode == 0, result.stderr
    status, body = result.stdout.strip().splitlines()[-2:]
    assert status == "503"
    error = orjson.loads(body)["error"]
    assert error["code"] == "database_unavailable"
    assert error["details"] == [
        {"field": "database", "code": "unreachable", "message": "OperationalError", "index": None}]


# --- /metrics --------------------------------------------------------------------------------

def test_metrics_count_requests(api, client):
    before = scrape(client).get(("tertulia_http_requests_total", (("method", "POST"), ("status", "200"))), 0)
    for _ in range(3):
        assert api.post("/api/v1/events", make_event("product_upserted", {"sku": "A", "title": "Taza"})).status_code == 200
    after = scrape(client)
    assert after[("tertulia_http_requests_total", (("method", "POST"), ("status", "200")))] == before + 3
    assert after[("tertulia_http_request_seconds_count", (("method", "POST"),))] >= 3
    assert after[("tertulia_events_ingested_total", (("source", "api"), ("type", "product_upserted")))] >= 3


def test_metrics_read_store_figures_from_the_database(api, client, store, other_store):
    cart = {"items": [{"sku": "A", "quantity": 1}], "total": "5.00", "currency": "EUR"}
    api.post("/api/v1/events", {"events": [
        make_event("cart_updated", {"cart_id": "c1", "customer": {"email": "ana@example.com"}, **cart}),
        make_event("cart_updated", {"cart_id": "c2", "customer": {"email": "luis@example.com"}, **cart}),
        make_event("cart_updated", {"cart_id": "c3", **cart}),
        make_event("order_placed", {"order_id": "o1", "cart_id": "c3", **cart}),
    ]})
    figures = scrape(client)
    assert figures[("tertulia_database_up", ())] == 1
    assert figures[("tertulia_events_stored", (("store", "tienda"),))] == 4
    assert figures[("tertulia_carts_open", (("store", "tienda"),))] == 2
    assert figures[("tertulia_customers", (("store", "tienda"),))] == 2
    assert figures[("tertulia_events_stored", (("store", "otra"),))] == 0
    assert figures[("tertulia_carts_open", (("store", "otra"),))] == 0


_COUNT_REQUESTS = """
import sys
from django.test import Client
client = Client()
for _ in range(int(sys.argv[1])):
    assert client.get("/healthz").status_code == 200
if sys.argv[2] == "scrape":
    print(client.get("/metrics").content.decode())
"""


def test_metrics_add_up_across_processes_in_multiprocess_mode(tmp_path):
    # Each gunicorn worker is a process of its own; a scrape reaching any one must show all of them.
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"), "TERTULIA_HOME": str(tmp_path), "LOG_LEVEL": "ERROR",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'ops.sqlite3'}"}
    with ThreadPoolExecutor(2) as pool:
        for result in pool.map(lambda count: _run_django(_COUNT_REQUESTS, env, count, "quiet"), ["5", "7"]):
            assert result.returncode == 0, result.stderr
    result = _run_django(_COUNT_REQUESTS, env, "1", "scrape")
    assert result.returncode == 0, result.stderr
    figures = samples(result.stdout)
    assert figures[("tertulia_http_requests_total", (("method", "GET"), ("status", "200")))] == 13
    assert figures[("tertulia_http_request_seconds_count", (("method", "GET"),))] == 13
    assert len(list((tmp_path / "prom").glob("*.db"))) >= 3


# --- Request ids and logs --------------------------------------------------------------------

@pytest.fixture
def json_log():
    """Capture what the JSON log handler would write, as parsed lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    yield lambda: [orjson.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(previous)


def test_request_log_line_carries_method_path_status_time_and_request_id(api, json_log):
    response = api.post("/api/v1/events", make_event("product_upserted", {"sku": "A", "title": "Taza"}))
    request_id = response["X-Request-ID"]
    assert len(request_id) == 32
    (line,) = [entry for entry in json_log() if entry["logger"] == "tertulia.request"]
    assert line["message"] == "request"
    assert (line["method"], line["path"], line["status"]) == ("POST", "/api/v1/events", 200)
    assert isinstance(line["ms"], float | int) and line["ms"] >= 0
    assert line["request_id"] == request_id
    assert line["store"] == "tienda"
    assert line["level"] == "info" and line["ts"].endswith("Z")


def test_a_clients_request_id_is_echoed_and_logged(client, db, json_log):
    response = client.get("/api/v1/nowhere", headers={"X-Request-ID": "shop-42.retry:1"})
    assert response["X-Request-ID"] == "shop-42.retry:1"
    assert response.status_code == 404
    lines = [entry for entry in json_log() if entry["logger"] == "tertulia.request"]
    assert [entry["request_id"] for entry in lines] == ["shop-42.retry:1"]


@pytest.mark.parametrize("offered", ["has spaces", "x" * 200, "new\nline", "<script>"])
def test_an_unsafe_request_id_is_replaced(client, db, offered):
    response = client.get("/healthz", headers={"X-Request-ID": offered})
    assert response["X-Request-ID"] != offered
    assert len(response["X-Request-ID"]) == 32


def test_every_line_logged_while_answering_carries_the_request_id(api, json_log):
    # Error lines from deep inside a request can be joined to the request that caused them.
    response = api.post("/api/v1/events", b"{broken", HTTP_X_REQUEST_ID="trace-me")
    assert response.status_code == 400
    logging.getLogger("tertulia.test").info("outside any request")
    lines = json_log()
    inside = [entry for entry in lines if entry["logger"] != "tertulia.test"]
    assert inside and all(entry["request_id"] == "trace-me" for entry in inside)
    outside = [entry for entry in lines if entry["logger"] == "tertulia.test"]
    assert "request_id" not in outside[0]


def test_health_and_metrics_are_not_logged(client, db, json_log):
    client.get("/healthz")
    client.get("/metrics")
    assert [entry for entry in json_log() if entry["logger"] == "tertulia.request"] == []
