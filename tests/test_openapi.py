"""The OpenAPI document is valid JSON for every client: no key appears twice in any object."""

import json


def _no_duplicate_keys(pairs):
    keys = [key for key, _ in pairs]
    duplicated = sorted({key for key in keys if keys.count(key) > 1})
    assert not duplicated, f"duplicated keys {duplicated} in {keys}"
    return dict(pairs)


def test_openapi_has_no_duplicate_keys_and_documents_ingestion(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = json.loads(response.content, object_pairs_hook=_no_duplicate_keys)
    ingest = document["paths"]["/api/v1/events"]["post"]
    assert set(ingest["responses"]) >= {"200", "401", "422"}
    answer = ingest["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["$ref"].endswith("/IngestOut")
    assert "oneOf" in ingest["requestBody"]["content"]["application/json"]["schema"]


def test_docs_page_is_served(client):
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    assert b"openapi.json" in page.content
