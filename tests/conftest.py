"""Shared fixtures: stores and API keys made through the same services users call."""

import itertools
import os
import tempfile
from datetime import UTC, datetime, timedelta

import orjson
import pytest

os.environ.setdefault("TERTULIA_HOME", tempfile.mkdtemp(prefix="tertulia-test-home-"))

from tertulia.core.services import api_key_create, store_create  # noqa: E402

_counter = itertools.count(1)


@pytest.fixture
def store(db):
    return store_create(slug="tienda", name="Tienda de prueba")


@pytest.fixture
def other_store(db):
    return store_create(slug="otra", name="Otra tienda")


@pytest.fixture
def api_key(store):
    return api_key_create(store=store, name="tests").secret


@pytest.fixture
def api(client, api_key):
    """A JSON client authenticated with the store's API key."""
    return ApiClient(client, api_key)


class ApiClient:
    def __init__(self, client, secret):
        self.client = client
        self.headers = {"Authorization": f"Bearer {secret}"}

    def get(self, path, **params):
        return self.client.get(path, params, headers=self.headers)

    def post(self, path, body, **extra):
        data = body if isinstance(body, bytes | str) else orjson.dumps(body)
        return self.client.post(path, data, content_type="application/json", headers=self.headers, **extra)

    def patch(self, path, body):
        return self.client.patch(path, orjson.dumps(body), content_type="application/json", headers=self.headers)

    def delete(self, path):
        return self.client.delete(path, headers=self.headers)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def make_event(type_: str, data: dict, *, at: datetime | None = None, event_id: str | None = None) -> dict:
    return {
        "id": event_id or f"evt-{next(_counter)}",
        "type": type_,
        "occurred_at": iso(at or datetime.now(UTC) - timedelta(minutes=5)),
        "data": data,
    }


@pytest.fixture
def event():
    return make_event
