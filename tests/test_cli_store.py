"""`tertulia store` and `tertulia apikey`: the production way to create a store and manage its keys."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tertulia.core.models import ApiKey, Store


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_store_create_prints_webhook_secrets(db):
    described = json.loads(run("store", "create", "mi-tienda", "--name", "Mi tienda"))
    store = Store.objects.get(slug="mi-tienda")
    assert described["shopify_secret"] == store.shopify_secret and len(store.shopify_secret) > 20
    assert described["woocommerce_webhook_path"] == "/webhooks/woocommerce/mi-tienda"
    assert "mi-tienda" in run("store", "list")


def test_store_create_refuses_bad_or_taken_slug(db):
    run("store", "create", "mi-tienda", "--name", "Mi tienda")
    with pytest.raises(CommandError, match="already exists"):
        run("store", "create", "mi-tienda", "--name", "Otra")
    with pytest.raises(CommandError, match="slug"):
        run("store", "create", "Mi Tienda!", "--name", "Otra")


def test_apikey_lifecycle_through_http(client, store):
    secret = run("apikey", "create", "--store", store.slug, "--name", "shop", "--scope", "read").strip()
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/products", headers=headers).status_code == 200
    assert client.post("/api/v1/events", b"{}", content_type="application/json", headers=headers).status_code == 403
    key = ApiKey.objects.get(store=store, name="shop")
    assert key.hashed != secret and secret not in run("apikey", "list", "--store", store.slug)
    run("apikey", "revoke", str(key.pk), "--store", store.slug)
    answer = client.get("/api/v1/products", headers=headers)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_api_key"


def test_apikey_revoke_cannot_reach_another_store(store, other_store):
    secret = run("apikey", "create", "--store", other_store.slug, "--name", "theirs").strip()
    key = ApiKey.objects.get(store=other_store)
    with pytest.raises(CommandError, match="has no key"):
        run("apikey", "revoke", str(key.pk), "--store", store.slug)
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None and secret
