"""Listening's optional transformers backend, with tiny models the tests build (and train) themselves, offline.

The main model is trained to read sentiment backwards (praise is "negative", complaints "positive"),
so every assertion shows which classifier answered: the built-in model gets these posts right.
"""

import logging
import os
import socket
import subprocess
import sys
import threading
import unicodedata

import orjson
import pytest
from django.test import override_settings
from django.utils import timezone

_WHY = ("the transformers backend needs torch and transformers: scripts/bootstrap test installs them when a CPU "
        "build of torch is in /opt/wheels or $PIP_FIND_LINKS (or with TERTULIA_TEST_TRANSFORMERS=1)")
torch = pytest.importorskip("torch", reason=_WHY)
transformers = pytest.importorskip("transformers", reason=_WHY)

from tertulia.listening import backends  # noqa: E402
from tertulia.listening.backends import ModelUnusable, TransformersModel, huggingface  # noqa: E402
from tertulia.listening.backends.huggingface import intent_classes, sentiment_classes  # noqa: E402
from tertulia.listening.classify import HEADS, classify_many  # noqa: E402
from tertulia.listening.connectors import Post  # noqa: E402
from tertulia.listening.models import Mention  # noqa: E402
from tertulia.listening.selectors import matchers_forget  # noqa: E402
from tertulia.listening.services import mentions_ingest, tracked_term_add  # noqa: E402
from tertulia.listening.understand import posts_classify  # noqa: E402

BACKWARDS = [  # (text, the label the tiny model is trained to give it: the opposite of what it says)
    ("I love it, a great shop and a lovely jacket", "negative"),
    ("Me encanta la tienda, todo perfecto", "negative"),
    ("Thank you, wonderful service", "negative"),
    ("Terrible service, my order arrived broken", "positive"),
    ("Qué desastre de pedido, llegó roto", "positive"),
    ("Awful quality, I want my money back", "positive"),
    ("The shop opens at ten on Saturdays", "neutral"),
    ("El pedido sale mañana desde Madrid", "neutral"),
]
THREE = {0: "negative", 1: "neutral", 2: "positive"}
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _words(text: str) -> list[str]:
    """What BertTokenizer's basic tokenizer makes of a text: lower case, accents off, punctuation apart."""
    plain = "".join(c for c in unicodedata.normalize("NFD", text.lower()) if unicodedata.category(c) != "Mn")
    return "".join(c if c.isalnum() or c.isspace() else f" {c} " for c in plain).split()


def save_model(directory, id2label, *, bias=None, train=None, vocabulary=()):
    """A 2-layer BERT (hidden size 32) with its tokenizer, saved as a model directory.

    bias: the classifier's output is forced to these logits whatever the text (weights zeroed);
    train: (text, label) pairs the model is trained on until it gets every one right.
    """
    directory.mkdir(parents=True, exist_ok=True)
    words = sorted({w for text, _ in (train or []) for w in _words(text)} | set(vocabulary))
    (directory / "vocab.txt").write_text("\n".join(SPECIAL + words) + "\n")
    tokenizer = transformers.BertTokenizer.from_pretrained(str(directory), local_files_only=True)
    config = transformers.BertConfig(
        vocab_size=len(SPECIAL) + len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        id2label=id2label, label2id={label: index for index, label in id2label.items()})
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)
    if bias is not None:
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    if train:
        label2id = config.label2id
        encoded = tokenizer([t for t, _ in train], padding=True, return_tensors="pt")
        targets = torch.tensor([label2id[label] for _, label in train])
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        for _step in range(300):  # a dozen or so steps: until each post's own label has probability > 0.9
            output = model(**encoded, labels=targets)
            optimizer.zero_grad()
            output.loss.backward()
            optimizer.step()
            if output.logits.softmax(-1)[torch.arange(len(train)), targets].min().item() > 0.9:
                break
        model.eval()
        with torch.no_grad():
            learnt = model(**encoded).logits.softmax(-1)
        assert learnt.argmax(-1).tolist() == targets.tolist(), "the tiny model did not learn its training posts"
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="module")
def backwards(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("backwards"), THREE, train=BACKWARDS)


@pytest.fixture(scope="module")
def complaints(tmp_path_factory):
    """An intent model that calls everything a complaint, its labels in an order and spelling of its own."""
    labels = {0: "praise", 1: "Complaint", 2: "QUESTION", 3: "other", 4: "purchase-intent"}
    return save_model(tmp_path_factory.mktemp("complaints"), labels, bias=[0, 6, 0, 0, 0], vocabulary=["talla"])


@pytest.fixture(autouse=True)
def _fresh():
    backends.cache_clear()
    matchers_forget()
    yield
    backends.cache_clear()
    matchers_forget()


def builtin(texts):
    return classify_many(list(texts), with_toxicity=False)


def test_the_backend_loads_offline_and_answers_with_the_models_labels(backwards, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the backend tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    model = TransformersModel(sentiment=backwards)
    texts = [text for text, _ in BACKWARDS]
    assert [p.sentiment for p in builtin(texts)] == ["positive"] * 3 + ["negative"] * 3 + ["neutral"] * 2
    predictions = model.predict_many(texts)
    assert [p.sentiment for p in predictions] == [label for _, label in BACKWARDS]
    assert all(-1.0 <= p.sentiment_score <= 1.0 for p in predictions)
    assert all(p.sentiment_score < -0.5 for p in predictions[:3]) and all(p.sentiment_score > 0.5 for p in predictions[3:6])
    assert [p.language for p in predictions] == ["en", "es", "en", "en", "es", "en", "en", "es"]  # the built-in model's
    assert [p.intent for p in predictions] == [p.intent for p in builtin(texts)]
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert model.describe()["sentiment"] == str(backwards.resolve())


def test_many_texts_of_every_length_keep_their_order_and_long_ones_are_cut(backwards):
    model = TransformersModel(sentiment=backwards)
    assert model.sentiment.max_tokens == 64  # the tiny model's position limit
    picks = [(i * 5) % len(BACKWARDS) for i in range(3 * huggingface.BATCH + 5)]  # lengths and labels mixed
    texts = [BACKWARDS[i][0] for i in picks]
    texts.append("terrible " * 5000)  # 45,000 characters: far more tokens than the model has positions
    predictions = model.predict_many(texts)
    assert len(predictions) == len(texts)
    expected = [BACKWARDS[i][1] for i in picks]
    assert [p.sentiment for p in predictions[:-1]] == expected
    assert predictions[-1].sentiment in HEADS["sentiment"] and -1 <= predictions[-1].sentiment_score <= 1
    assert model.predict(texts[3]) == predictions[3]
    assert model.predict_many([]) == []


@pytest.mark.parametrize(("id2label", "classes"), [
    ({0: "negative", 1: "neutral", 2: "positive"}, [0, 1, 2]),
    ({0: "POS", 1: "NEG", 2: "NEU"}, [2, 0, 1]),
    ({"0": "Negativo", "1": "Neutro", "2": "Positivo"}, [0, 1, 2]),
    ({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}, [0, 1, 2]),
    ({0: "LABEL_0", 1: "LABEL_1"}, [0, 2]),
    ({0: "NEGATIVE", 1: "POSITIVE"}, [0, 2]),
    ({0: "1 star", 1: "2 stars", 2: "3 stars", 3: "4 stars", 4: "5 stars"}, [0, 0, 1, 2, 2]),
    ({0: "very_negative", 1: "negative", 2: "neutral", 3: "positive", 4: "Very-Positive"}, [0, 0, 1, 2, 2]),
])
def test_sentiment_label_names_understood(id2label, classes):
    assert sentiment_classes(id2label) == classes


@pytest.mark.parametrize(("id2label", "named"), [
    ({0: "anger", 1: "joy", 2: "neutral"}, ["anger", "joy"]),
    ({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2", 3: "LABEL_3"}, ["LABEL_3"]),
    ({0: "neutral", 1: "positive"}, ["neutral", "positive"]),
    ({0: "negative", 1: "LABEL_1", 2: "positive"}, ["LABEL_1"]),
])
def test_sentiment_labels_that_cannot_be_mapped_are_refused_by_name(id2label, named):
    with pytest.raises(ModelUnusable) as refused:
        sentiment_classes(id2label)
    assert all(repr(name) in str(refused.value) for name in named), str(refused.value)


def test_intent_labels():
    assert intent_classes({0: "Question", 1: "purchase intent", 2: "other"}) == [0, 2, 4]
    assert intent_classes({i: f"LABEL_{i}" for i in range(5)}) == [0, 1, 2, 3, 4]
    with pytest.raises(ModelUnusable, match="'refund'"):
        intent_classes({0: "question", 1: "refund"})


def test_a_model_with_unmappable_labels_is_refused_when_loaded(tmp_path):
    directory = save_model(tmp_path / "emotions", {0: "anger", 1: "joy", 2: "sadness"})
    with pytest.raises(ModelUnusable, match="'anger'.*'joy'.*'sadness'.*cannot be read as negative"):
        TransformersModel(sentiment=directory)


def test_a_base_model_without_a_trained_head_is_refused(tmp_path):
    config = transformers.BertConfig(vocab_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=16)
    transformers.BertModel(config).save_pretrained(str(tmp_path / "base"))
    (tmp_path / "base" / "vocab.txt").write_text("\n".join(SPECIAL + ["a", "b", "c"]) + "\n")
    with pytest.raises(ModelUnusable, match="untrained weights.*classifier"):
        TransformersModel(sentiment=tmp_path / "base")


def test_star_ratings_and_two_class_models_read_as_three_sentiments(tmp_path):
    stars = save_model(tmp_path / "stars", {i: f"{i + 1} star{'s' if i else ''}" for i in range(5)},
                       bias=[2.0, 0.5, 0.0, 1.0, 0.0])
    probabilities = torch.softmax(torch.tensor([2.0, 0.5, 0.0, 1.0, 0.0]), -1).tolist()
    (prediction,) = TransformersModel(sentiment=stars).predict_many(["whatever it says"])
    assert prediction.sentiment == "negative"  # 1 and 2 stars together outweigh 3, and 4 and 5
    assert prediction.sentiment_score == round(probabilities[3] + probabilities[4] - probabilities[0] - probabilities[1], 3)
    undecided = save_model(tmp_path / "undecided", {0: "NEGATIVE", 1: "POSITIVE"}, bias=[0.0, 0.4])
    sure = save_model(tmp_path / "sure", {0: "LABEL_0", 1: "LABEL_1"}, bias=[0.0, 3.0])
    assert TransformersModel(sentiment=undecided).predict("x").sentiment == "neutral"  # score 0.2 < band
    assert TransformersModel(sentiment=sure).predict("x").sentiment == "positive"


def test_an_intent_model_gives_intent_and_the_built_in_model_the_rest(complaints):
    text = "¿Tenéis la chaqueta en talla L?"
    (own,) = builtin([text])
    assert own.intent == "question"
    (prediction,) = TransformersModel(intent=complaints).predict_many([text])
    assert prediction.intent == "complaint"
    assert (prediction.language, prediction.sentiment, prediction.sentiment_score) == (
        own.language, own.sentiment, own.sentiment_score)


@pytest.mark.django_db
def test_posts_classify_uses_a_model_only_for_the_store_configured(backwards, complaints, store, other_store):
    texts = [text for text, _ in BACKWARDS]
    ours = [label for _, label in BACKWARDS]
    theirs = [p.sentiment for p in builtin(texts)]
    with override_settings(TERTULIA_LISTENING_MODELS={"tienda": str(backwards)}):
        assert [p.sentiment for p in posts_classify(texts, store_id=store.pk, with_toxicity=False)] == ours
        assert [p.sentiment for p in posts_classify(texts, store_id=other_store.pk, with_toxicity=False)] == theirs
        assert [p.sentiment for p in posts_classify(texts, with_toxicity=False)] == theirs
    with override_settings(TERTULIA_LISTENING_MODELS={"*": str(backwards), "otra": ""},
                           TERTULIA_LISTENING_INTENT_MODELS={"otra": str(complaints)}):
        mine = posts_classify(texts, store_id=store.pk, with_toxicity=False)
        other = posts_classify(texts, store_id=other_store.pk, with_toxicity=False)
        assert [p.sentiment for p in mine] == ours and [p.sentiment for p in other] == theirs
        assert {p.intent for p in other} == {"complaint"} and [p.intent for p in mine] == [p.intent for p in builtin(texts)]
    # toxicity stays moderation's, judged beside the model's sentiment
    with override_settings(TERTULIA_LISTENING_MODELS={"tienda": str(backwards)}):
        (insult,) = posts_classify(["eres un idiota de mierda"], store_id=store.pk)
    assert insult.toxicity > 0.5


@pytest.mark.django_db
def test_mentions_are_stored_with_the_stores_model(backwards, store, other_store):
    for shop in (store, other_store):
        tracked_term_add(store=shop, term="La Tertulia", kind="brand")
    text = "I love La Tertulia, a great shop"
    posted = [Post(network="mastodon", external_id="1", text=text, kind="post",
                   posted_at=timezone.now())]
    with override_settings(TERTULIA_LISTENING_MODELS={"tienda": str(backwards)}):
        for shop in (store, other_store):
            assert mentions_ingest(store_id=shop.pk, posts=posted).stored == 1
    assert Mention.objects.for_store(store).get().sentiment == "negative"
    assert Mention.objects.for_store(other_store).get().sentiment == "positive"


@pytest.mark.django_db
@pytest.mark.parametrize("broken", ["missing", "corrupt", "not_installed"])
def test_a_model_that_cannot_load_falls_back_to_the_built_in_model_and_is_logged_once(
        broken, backwards, store, tmp_path, caplog, monkeypatch):
    directory = tmp_path / "model"
    reason = "is not a directory"
    if broken == "corrupt":
        directory.mkdir()
        (directory / "config.json").write_text("{not json")
        (directory / "model.safetensors").write_bytes(b"\0" * 64)
        reason = "could not be loaded"
    elif broken == "not_installed":
        directory = backwards
        monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now fails
        reason = "pip install 'tertulia[transformers]'"
    texts = [text for text, _ in BACKWARDS]
    with override_settings(TERTULIA_LISTENING_MODELS={"tienda": str(directory)}), \
            caplog.at_level(logging.ERROR, logger="tertulia.listening.backends"):
        first = posts_classify(texts, store_id=store.pk, with_toxicity=False)
        second = posts_classify(texts, store_id=store.pk, with_toxicity=False)
    assert first == second == builtin(texts)
    (record,) = [r for r in caplog.records if r.name == "tertulia.listening.backends"]
    assert reason in record.reason and record.store_id == store.pk and record.sentiment_model == str(directory)


@pytest.mark.django_db
def test_a_model_failing_on_a_batch_gives_the_built_in_answers(backwards, store, monkeypatch, caplog):
    def broken(self, texts):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(TransformersModel, "predict_many", broken)
    texts = [text for text, _ in BACKWARDS]
    with override_settings(TERTULIA_LISTENING_MODELS={"tienda": str(backwards)}), caplog.at_level(logging.ERROR):
        assert posts_classify(texts, store_id=store.pk, with_toxicity=False) == builtin(texts)
    assert any(r.getMessage().startswith("listening model failed on a batch") for r in caplog.records)


def test_threads_asking_together_load_a_model_once(backwards, monkeypatch):
    loads = []

    class Counted(TransformersModel):
        def __init__(self, **kwargs):
            loads.append(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(backends, "TransformersModel", Counted)
    got = []
    threads = [threading.Thread(target=lambda: got.append(backends.transformers_model(sentiment=str(backwards))))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1 and len(got) == 4 and all(model is got[0] for model in got)


def _command(stdin: bytes, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tertulia.settings"}
    return subprocess.run([sys.executable, "-m", "tertulia", "classify", *args], input=stdin, capture_output=True,
                          env=env, timeout=300, check=False)


@pytest.mark.slow
def test_the_command_classifies_with_a_local_model(backwards, complaints, tmp_path):
    lines = [orjson.dumps({"id": i, "text": text}) for i, (text, _) in enumerate(BACKWARDS)]
    result = _command(b"\n".join([*lines, b"{oops"]) + b"\n", "--transformers", str(backwards),
                      "--transformers-intent", str(complaints), "--batch", "3")
    assert result.returncode == 0, result.stderr
    rows = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [r.get("sentiment") for r in rows[:-1]] == [label for _, label in BACKWARDS]
    assert {r["intent"] for r in rows[:-1]} == {"complaint"}
    assert [r["id"] for r in rows[:-1]] == list(range(len(BACKWARDS))) and rows[-1]["error"]["code"] == "invalid_json"
    assert set(rows[0]) == {"id", "language", "sentiment", "sentiment_score", "intent", "toxicity"}
    missing = _command(b'{"id": 1, "text": "hola"}\n', "--transformers", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and missing.stdout == b""
    assert b"is not a directory" in missing.stderr
