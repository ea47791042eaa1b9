"""Tracked terms: normalisation, word boundaries, exclude rules, many terms, and terms from the catalogue."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from tertulia.catalog.services import products_upsert
from tertulia.listening.matching import Matcher, Term, normalize, tokens
from tertulia.listening.models import TrackedTerm
from tertulia.listening.selectors import matcher_for_store
from tertulia.listening.services import tracked_term_add, tracked_terms_sync_catalogue


def names(matches):
    return sorted({m.term.term for m in matches})


def test_normalize_folds_case_accents_and_punctuation():
    assert normalize("¡Qué CAFÉ tan rico, señora!") .split() == ["que", "cafe", "tan", "rico", "senora"]
    assert tokens("Me gusta #Tertulia_Shop y @Tienda.") == ["me", "gusta", "#tertulia", "shop", "y", "@tienda"]
    assert tokens("a#b c@d ##") == ["a", "b", "c", "d"]


def test_case_and_accents_do_not_matter():
    matcher = Matcher([Term("Café Olé", "brand"), Term("camión", "keyword")])
    assert names(matcher.mentions("el CAFE OLE de siempre")) == ["Café Olé"]
    assert names(matcher.mentions("Cafè-Olé!!")) == ["Café Olé"]
    assert names(matcher.mentions("llegó el CAMION")) == ["camión"]


def test_only_whole_words_match():
    matcher = Matcher([Term("sol", "keyword"), Term("Air Max", "product")])
    assert matcher.mentions("el soldado y el girasol") == []
    assert names(matcher.mentions("tomando el sol.")) == ["sol"]
    assert matcher.mentions("air maximum") == []
    assert names(matcher.mentions("mis air   max nuevas")) == ["Air Max"]


def test_hashtags_handles_and_skus():
    matcher = Matcher([Term("Air Max", "product"), Term("#BlackFriday", "hashtag"), Term("AB-123", "sku")])
    assert names(matcher.mentions("#AirMax por fin")) == ["Air Max"]
    assert names(matcher.mentions("gracias @airmax")) == ["Air Max"]
    assert names(matcher.mentions("ofertas #blackfriday")) == ["#BlackFriday"]
    assert matcher.mentions("black friday sin hashtag") == []
    assert names(matcher.mentions("el ab 123 llegó roto")) == ["AB-123"]
    assert names(matcher.mentions("el AB123 llegó roto")) == ["AB-123"]


def test_overlapping_terms_are_all_found_with_positions():
    matcher = Matcher([Term("he"), Term("she"), Term("hers"), Term("she sells"), Term("sells sea shells")])
    found = matcher.find("she sells sea shells")
    assert {(m.term.term, m.start, m.end) for m in found} == {
        ("she", 0, 1), ("she sells", 0, 2), ("sells sea shells", 1, 4)}


def test_exclude_rules_drop_the_whole_post():
    matcher = Matcher([Term("Apple", "competitor"), Term("apple pie", exclude=True)])
    assert names(matcher.mentions("the new Apple phone")) == ["Apple"]
    assert matcher.mentions("grandma's apple pie and an apple phone") == []
    assert [m.term.term for m in matcher.find("apple pie")] == ["Apple", "apple pie"]


def test_thousands_of_terms_match_like_a_naive_scan():
    rng = random.Random(7)
    vocabulary = [f"w{i}" for i in range(3000)] + ["año", "niño", "café"]
    terms = [Term(" ".join(rng.sample(vocabulary, rng.randint(1, 3)))) for _ in range(5000)]
    matcher = Matcher(terms)
    for _ in range(300):
        words = [rng.choice(vocabulary) for _ in range(rng.randint(1, 25))]
        text = " ".join(w.upper() if rng.random() < 0.3 else w for w in words)
        expected = set()
        norm_words = tokens(text)
        for term in terms:
            tw = tokens(term.term)
            for i in range(len(norm_words) - len(tw) + 1):
                if norm_words[i:i + len(tw)] == tw:
                    expected.add((term.term, i))
        assert {(m.term.term, m.start) for m in matcher.find(text)} == expected


def test_empty_terms_and_empty_text():
    matcher = Matcher([Term("!!!"), Term("  ")])
    assert matcher.terms == []
    assert matcher.mentions("") == []
    assert Matcher([Term("x")]).mentions("") == []


@pytest.mark.django_db
def test_terms_are_per_store_and_catalogue_fills_products(store, other_store):
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    products_upsert(store=store, products=[
        (moment, {"sku": "ZAP-42", "title": "Zapatilla Trail Águila"}),
        (moment, {"sku": "CAM-1", "title": "Camiseta Básica"}),
    ])
    tracked_term_add(store=store, term="Tertulia", kind="brand")
    tracked_term_add(store=store, term="Tertulia", kind="brand")  # idempotent
    tracked_term_add(store=other_store, term="Otra Marca", kind="brand")
    assert tracked_terms_sync_catalogue(store=store) == {"created": 4, "deleted": 0}
    assert tracked_terms_sync_catalogue(store=store) == {"created": 0, "deleted": 0}

    matcher = matcher_for_store(store=store)
    found = matcher.mentions("Mi zapatilla trail aguila (zap 42) de Tertulia")
    assert names(found) == ["Tertulia", "ZAP-42", "Zapatilla Trail Águila"]
    assert {m.term.product_id for m in found if m.term.kind in ("product", "sku")} == {
        TrackedTerm.objects.for_store(store).get(term="ZAP-42").product_id}
    assert matcher.mentions("Otra marca") == []
    assert names(matcher_for_store(store=other_store).mentions("otra MARCA")) == ["Otra Marca"]

    products_upsert(store=store, products=[(moment + timedelta(hours=1), {"sku": "CAM-1", "title": "Camiseta Lisa"})])
    assert tracked_terms_sync_catalogue(store=store) == {"created": 1, "deleted": 1}
    products_upsert(store=store, products=[(moment + timedelta(hours=2), {"sku": "CAM-1", "title": "Camiseta Lisa", "active": False})])
    assert tracked_terms_sync_catalogue(store=store) == {"created": 0, "deleted": 2}
    assert sorted(TrackedTerm.objects.for_store(store).values_list("term", flat=True)) == [
        "Tertulia", "ZAP-42", "Zapatilla Trail Águila"]


@pytest.mark.django_db
def test_bad_terms_are_refused(store):
    with pytest.raises(ValueError):
        tracked_term_add(store=store, term="¡¡!!", kind="brand")
    with pytest.raises(ValueError):
        tracked_term_add(store=store, term="x", kind="celebrity")


def test_posts_understand_keeps_mentions_with_products_and_classification():
    from tertulia.listening.understand import posts_understand

    matcher = Matcher([Term("Tertulia", "brand"), Term("Cafetera Brisa", "product", product_id=7),
                       Term("CB-7", "sku", product_id=7), Term("Taza Faro", "product", product_id=9),
                       Term("tertulia literaria", exclude=True)])
    posts = ["nada que ver", "¿La cafetera brisa (cb 7) tiene garantía? @tertulia", "una tertulia literaria",
             "Love my Taza Faro and the cafetera BRISA from #Tertulia!"]
    understood = posts_understand(posts, matcher=matcher, with_toxicity=False)
    assert [u.index for u in understood] == [1, 3]
    assert understood[0].product_ids == [7] and understood[0].terms == ["CB-7", "Cafetera Brisa", "Tertulia"]
    assert understood[0].prediction.intent == "question" and understood[0].prediction.language == "es"
    assert understood[1].product_ids == [9, 7] and understood[1].prediction.sentiment == "positive"
    assert posts_understand([], matcher=matcher) == []
