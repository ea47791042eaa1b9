"""`tertulia moderation train`: on a tiny data set, for the shipped files and for one store's decisions."""

import json
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from tertulia.moderation.classifier import Classifier, features
from tertulia.moderation.models import StoreClassifier
from tertulia.moderation.normalize import normalize
from tertulia.moderation.selectors import store_classifier
from tertulia.moderation.services import ContentItem, content_moderate, decision_record

TINY = [
    ("Visita mi web y gana dinero desde casa", ["promotional"]),
    ("Check out my channel and subscribe", ["promotional"]),
    ("Follow me on Instagram for free followers", ["promotional"]),
    ("Suscríbete a mi canal de YouTube", ["promotional"]),
    ("Eres un imbécil", ["insult"]),
    ("You are an idiot", ["insult"]),
    ("No tienes ni idea, cállate", ["personal_attack"]),
    ("Shut up, nobody asked you", ["personal_attack"]),
    ("Una mierda de producto", ["rudeness"]),
    ("This shit broke", ["rudeness"]),
    ("¿Alguien vio el partido de anoche?", ["off_topic"]),
    ("Who won the game last night?", ["off_topic"]),
    ("Muy cómodas y bonitas, las recomiendo", []),
    ("Great pan, nothing sticks", []),
    ("Llegó rota y la devolución fue lenta", []),
    ("Terrible battery, returned it", []),
    ("La talla es correcta y el envío rápido", []),
    ("Good value for money", []),
]


def tiny_data(directory: Path) -> Path:
    for language in ("es", "en"):
        with (directory / f"labelled_{language}.jsonl").open("w") as handle:
            for n, (text, labels) in enumerate(TINY):
                handle.write(json.dumps({"id": f"{language}-{n}", "language": language, "split": "train",
                                         "text": text, "labels": labels}) + "\n")
    (directory / "youtube_spam").mkdir()
    (directory / "youtube_spam" / "Youtube01-Psy.csv").write_text(
        "COMMENT_ID,AUTHOR,DATE,CONTENT,CLASS\n"
        "a,x,2013-01-01,check out my new video please subscribe,1\n"
        "b,y,2013-01-01,love this song so much,0\n", encoding="utf-8")
    return directory


def test_train_writes_the_classifier_files(tmp_path):
    (tmp_path / "data").mkdir()
    data = tiny_data(tmp_path / "data")
    out = tmp_path / "out"
    stdout = StringIO()
    call_command("moderation", "train", "--data", str(data), "--output", str(out), "--epochs", "40", stdout=stdout)
    assert "examples" in stdout.getvalue()
    spam = Classifier.from_json((out / "spam.json").read_bytes())
    toxicity = Classifier.from_json((out / "toxicity.json").read_bytes())
    assert set(spam.heads) == {"promotional", "off_topic"} and set(toxicity.heads) == {"attack", "rudeness"}

    def score(model, head, text):
        norm = normalize(text)
        return model.scores(features(norm.text, norm.tokens, text))[head]

    assert score(spam, "promotional", "subscribe to my channel") > score(spam, "promotional", "nice pan")
    assert score(toxicity, "attack", "eres un imbécil") > score(toxicity, "attack", "muy cómodas")


def test_train_refuses_missing_data(tmp_path):
    with pytest.raises(CommandError):
        call_command("moderation", "train", "--data", str(tmp_path / "nothing"), "--output", str(tmp_path))


@pytest.mark.django_db
def test_store_retrains_from_its_moderators_decisions(store, other_store, tmp_path):
    data = tiny_data(tmp_path)
    moderator = get_user_model().objects.create_user("moderadora")
    texts = ["Compra en mi tienda de ofertas ya", "Ofertas increíbles en mi perfil", "Qué bonitas, me encantan"]
    for content_id, text in enumerate(texts, 1):
        verdict = content_moderate(store=store, item=ContentItem(kind="review", text=text), content_type="review",
                                   content_id=content_id)
        decision_record(store=store, content_type="review", content_id=content_id,
                        action="approve" if content_id == 3 else "reject",
                        results=[{"code": "promotional", "score": 0.9, "evidence": []}] if content_id < 3 else [],
                        policy_version=verdict.policy_version, decided_by=moderator, automatic=False)
    stdout = StringIO()
    call_command("moderation", "train", "--store", store.slug, "--data", str(data), "--epochs", "40", stdout=stdout)
    assert '"store_decisions": 3' in stdout.getvalue()
    assert set(StoreClassifier.objects.filter(store=store).values_list("name", "version")) == {("spam", 1), ("toxicity", 1)}
    model = store_classifier(store=store, name="spam")
    assert model.info["store"] == store.slug and model.info["examples"]["store_decisions"] == 3
    # Retraining again makes a new version; the newest is the one used.
    call_command("moderation", "train", "--store", store.slug, "--data", str(data), "--epochs", "20", stdout=StringIO())
    assert StoreClassifier.objects.filter(store=store, name="spam").count() == 2
    assert store_classifier(store=store, name="spam") is not model
    # Another store keeps the shipped classifier.
    assert store_classifier(store=other_store, name="spam").info.get("store") is None


@pytest.mark.django_db
def test_policy_command_shows_and_validates(store):
    stdout = StringIO()
    call_command("moderation", "policy", store.slug, "--set", '{"thresholds": {"rudeness": {"hold": 0.7}}}',
                 stdout=stdout)
    shown = json.loads(stdout.getvalue())
    assert shown["version"] == 2 and shown["thresholds"]["rudeness"]["hold"] == 0.7
    with pytest.raises(CommandError, match="hold_above_reject"):
        call_command("moderation", "policy", store.slug, "--set", '{"thresholds": {"rudeness": {"hold": 0.99}}}')
