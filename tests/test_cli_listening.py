"""`tertulia listening`: sources with their health, tracked terms and mentions from the command line."""

import json
from io import StringIO

import listening_fake_connector as fake
import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from tertulia.listening.models import Source, TrackedTerm

pytestmark = pytest.mark.django_db


def run(*args, stdin: str | None = None, monkeypatch=None) -> str:
    out = StringIO()
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", StringIO(stdin))
    call_command("listening", *args, stdout=out)
    return out.getvalue()


def test_a_webhook_source_is_made_with_a_token_shown_once(store):
    made = json.loads(run("source", "set", "tienda", "foro", "--network", "webhook", "--name", "Foro"))
    assert made["network"] == "webhook" and len(made["token"]) > 30 and made["secrets_set"] == ["token"]
    shown = json.loads(run("source", "show", "tienda", "foro"))
    assert "token" not in shown and made["token"] not in json.dumps(shown)
    listed = json.loads(run("source", "list", "tienda"))
    assert [s["key"] for s in listed["sources"]] == ["foro"]
    new = json.loads(run("source", "token", "tienda", "foro"))["token"]
    assert new != made["token"]


def test_secrets_come_from_the_environment_or_stdin_never_the_command_line(store, monkeypatch):
    with override_settings(TERTULIA_LISTENING_CONNECTORS={"mastodon": "listening_fake_connector"}):
        monkeypatch.setenv("MASTO_TOKEN", "abc123")
        run("source", "set", "tienda", "social", "--network", "mastodon", "--setting", "poll_seconds=120",
            "--secret-env", "token=MASTO_TOKEN")
        source = Source.objects.get(key="social")
        assert source.settings == {"poll_seconds": 120} and "abc123" not in source.secrets_encrypted
        with pytest.raises(CommandError, match="MISSING is not set"):
            run("source", "set", "tienda", "social", "--network", "mastodon", "--secret-env", "token=MISSING")
        with pytest.raises(CommandError, match="settings.nope"):
            run("source", "set", "tienda", "social", "--network", "mastodon", "--setting", "nope=1")
        run("source", "set", "tienda", "social", "--network", "mastodon", "--secrets-stdin", stdin='{"token": "z"}',
            monkeypatch=monkeypatch)
        fake.SCRIPT.clear()
        outcome = json.loads(run("source", "run", "tienda", "social"))
        assert outcome["outcome"] == "ok" and outcome["status"] == "ok"


def test_terms_and_mentions(store):
    added = json.loads(run("terms", "add", "tienda", "La Tertulia", "--kind", "brand"))
    run("terms", "add", "tienda", "tarta", "--exclude")
    lines = [json.loads(line) for line in run("terms", "list", "tienda").splitlines()]
    assert [(t["term"], t["exclude"]) for t in lines] == [("La Tertulia", False), ("tarta", True)]
    assert json.loads(run("terms", "remove", "tienda", str(added["id"]))) == {"removed": True}
    assert TrackedTerm.objects.count() == 1
    with pytest.raises(CommandError, match="at least one letter"):
        run("terms", "add", "tienda", "!!!")
    assert json.loads(run("terms", "sync", "tienda")) == {"created": 0, "deleted": 0}
    assert run("mentions", "tienda") == ""


def test_unknown_stores_and_sources(store):
    with pytest.raises(CommandError, match="No store"):
        run("source", "list", "nada")
    with pytest.raises(CommandError, match="no source"):
        run("source", "show", "tienda", "nada")
